//! The `tracer` command: parse the arguments, run the mode, exit with its code.
mod cli;

fn main() {
    let code = match cli::main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tracer: error: {e:#}");
            e.downcast_ref::<tracer::exit::Failure>()
                .map_or(1, |f| f.code)
        }
    };
    std::process::exit(code);
}
