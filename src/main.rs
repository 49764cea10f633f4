//! Entry point: everything happens in `dispatch::main`.
fn main() -> std::process::ExitCode {
    cni_multi::dispatch::main(std::env::args_os().collect())
}
