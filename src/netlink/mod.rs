//! rtnetlink over neli, with our own request/ACK loop so the kernel's extended-ACK text
//! reaches error messages. Applets use the typed operations here and never build messages.
