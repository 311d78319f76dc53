fn main() { eprintln!("dynkv: the node binary arrives with the cluster work; see README"); std::process::exit(2); }
