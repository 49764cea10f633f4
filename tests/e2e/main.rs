//! End-to-end tests: the built binary, run inside a throwaway "host" netns against a throwaway
//! "container" netns. Root is required; without it each test prints why it skipped.
