//! Prints what one argon2id hash and one verification cost on this machine
//! (why successful checks are cached): `cargo run --release -p
//! dynkv-security --example argon2_cost`.

use std::time::Instant;

fn main() {
    let rounds = 20;
    let t = Instant::now();
    let mut phc = String::new();
    for i in 0..rounds {
        phc = dynkv_security::hash_password("correct horse battery staple", [i as u8; 16]);
    }
    let hash = t.elapsed() / rounds;
    let t = Instant::now();
    for _ in 0..rounds {
        assert!(dynkv_security::verify_password(
            &phc,
            "correct horse battery staple"
        ));
    }
    let verify = t.elapsed() / rounds;
    println!("argon2id (19 MiB, t=2, p=1): hash {hash:?}, verify {verify:?} (mean of {rounds})");
}
