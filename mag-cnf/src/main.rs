//! `pmip-mag --config FILE`: the Proxy Mobile IPv6 mobile access gateway (RFC 5213).

fn main() -> std::process::ExitCode {
    mag_cnf::cli::main_from(std::env::args_os())
}
