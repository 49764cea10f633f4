//! End-to-end tests: the built binary, run inside a throwaway "host" netns against a throwaway
//! "container" netns. Root is required; without it each test prints why it skipped.
//! `support` is the rig; each other module tests one applet (or the rig itself, or install.sh).

mod support;

mod install_sh;
mod portmap;
mod rig;
