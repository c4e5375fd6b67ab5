//! The checker on a pathological schema: `n` types that all reach each
//! other through a dense random web of fields (plus capabilities), a secret
//! field in every tenth type, `n / 10` interfaces of 10 methods, 10 roots.
//!
//! `cargo bench -p remote-policy --bench dense` checks 1,000 and 2,000 types
//! and prints the time of the check (graph and rules) and the number of
//! findings. `cargo bench -p remote-policy --bench dense -- --write N FILE`
//! writes the schema of `N` types as JSON instead, for `--timings` runs of
//! the `remote-policy` binary (see `dense.sh`, which also measures memory).

use std::time::Instant;

use remote_core::schema::{Schema, Ty};
use remote_policy::testing::*;
use remote_policy::Policy;

/// A deterministic pseudo-random sequence (64-bit LCG).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

/// The dense schema of `n` types.
fn dense(n: usize) -> Schema {
    let mut rng = Lcg(n as u64);
    let ty = |i: usize| format!("app::T{i}");
    let ifaces = (n / 10).max(1);
    let iface_name = |i: usize| format!("app::I{i}");
    let mut types = Vec::new();
    for i in 0..n {
        let mut fields = vec![
            field("next", named(&ty((i + 1) % n))),
            field("maybe", option(named(&ty(rng.below(n))))),
            field("many", seq(named(&ty(rng.below(n))))),
        ];
        if i % 10 == 0 {
            fields.push(secret_field("key", string()));
        }
        if i % 50 == 0 {
            fields.push(field("handle", cap(&iface_name(rng.below(ifaces)))));
        }
        types.push(strukt(&ty(i), fields));
    }
    let mut interfaces = Vec::new();
    for i in 0..ifaces {
        let methods = (0..10)
            .map(|m| {
                let arg = named(&ty(rng.below(n)));
                let ret = if m == 9 {
                    cap(&iface_name(rng.below(ifaces)))
                } else {
                    named(&ty(rng.below(n)))
                };
                method(&format!("m{m}"), vec![("x", arg)], ret)
            })
            .collect();
        interfaces.push(iface(&iface_name(i), methods));
    }
    let _ = Ty::Unit;
    schema_with(interfaces, types)
}

fn policy(n: usize) -> Policy {
    let roots: Vec<String> = (0..10)
        .map(|i| format!("\"app::I{}\"", i * (n / 10).max(1) / 10))
        .collect();
    Policy::from_toml(&format!("roots = [{}]", roots.join(", "))).unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--write") {
        let n: usize = args[i + 1].parse().expect("--write N FILE");
        let path = &args[i + 2];
        std::fs::write(path, remote_policy::export::to_json(&dense(n))).unwrap();
        let roots = policy(n)
            .roots
            .iter()
            .map(|r| format!("{r:?}"))
            .collect::<Vec<_>>();
        std::fs::write(
            format!("{path}.policy.toml"),
            format!("roots = [{}]\n", roots.join(", ")),
        )
        .unwrap();
        return;
    }
    for n in [1000, 2000] {
        let schema = dense(n);
        let policy = policy(n);
        let mut best = f64::INFINITY;
        let mut findings = 0;
        for _ in 0..3 {
            let start = Instant::now();
            let report = remote_policy::check(&schema, &policy).unwrap();
            best = best.min(start.elapsed().as_secs_f64());
            findings = report.findings.len();
        }
        println!(
            "dense {n} types, {} interfaces: {:.1} ms, {findings} findings",
            schema.interfaces.len(),
            best * 1e3
        );
    }
}
