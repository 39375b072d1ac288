//! `baton`: the admin CLI for batond. See `batond::cli`.

fn main() -> std::process::ExitCode {
    batond::cli::main()
}
