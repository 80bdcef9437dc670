//! The `nsqrs` binary: argument parsing and wiring only; the work is in the library.

fn main() {
    let args: Vec<String> = std::env::args().skip(2).collect();
    let mut opts = nsqrs::options::NsqdOptions::default();
    for a in args {
        let (k, v) = a.trim_start_matches('-').split_once('=').unwrap_or((&a, ""));
        match k {
            "tcp-address" => opts.tcp_address = v.into(),
            "http-address" => opts.http_address = v.into(),
            "data-path" => opts.data_path = v.into(),
            "msg-timeout" => opts.msg_timeout = std::time::Duration::from_millis(v.parse().unwrap()),
            "sync-every" => opts.sync_every = v.parse().unwrap(),
            _ => {}
        }
    }
    std::process::exit(nsqrs::server::run(opts));
}
