//! tracer: per-process, per-chip device memory of accelerator runtimes, from eBPF uprobes.
mod cli;
mod ledger;
mod live;
mod probe;
mod report;
mod runtime;
mod session;

fn main() {
    let code = match cli::main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tracer: error: {e:#}");
            e.downcast_ref::<cli::Failure>().map_or(1, |f| f.code)
        }
    };
    std::process::exit(code);
}
