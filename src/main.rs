fn main() -> std::process::ExitCode {
    labctl::cli::main()
}
