//! sysctl reads and writes under `/proc/sys`, per netns.
