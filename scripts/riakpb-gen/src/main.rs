//! Compiles Riak's `.proto` files (argument 1: their directory) into one
//! prost module (argument 2: the output directory, written as `_.rs`).

fn main() {
    let mut args = std::env::args().skip(1);
    let (dir, out) = match (args.next(), args.next()) {
        (Some(d), Some(o)) => (d, o),
        _ => {
            eprintln!("usage: riakpb-gen PROTO_DIR OUT_DIR");
            std::process::exit(2);
        }
    };
    let fds = protox::compile(["riak.proto", "riak_kv.proto", "riak_dt.proto"], [&dir])
        .unwrap_or_else(|e| panic!("{e:?}"));
    let mut cfg = prost_build::Config::new();
    cfg.bytes(["."]);
    cfg.out_dir(&out);
    cfg.compile_fds(fds).unwrap_or_else(|e| panic!("{e}"));
}
