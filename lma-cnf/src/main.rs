//! `pmip-lma --config FILE`: the Proxy Mobile IPv6 local mobility anchor (RFC 5213).

fn main() -> std::process::ExitCode {
    lma_cnf::cli::main_from(std::env::args_os())
}
