//! Who allocated a buffer: the Python frames of the thread that asked for it.
use serde::{Deserialize, Serialize};

/// One Python frame: where the interpreter was in a function when the allocation happened.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Frame {
    pub file: String,
    pub function: String,
    /// 1-based line; 0 when the line table could not be read.
    pub line: u32,
}

/// The allocation site of a buffer: its Python stack, innermost frame first (bounded depth),
/// and the ttnn entry point the program called (e.g. `ttnn.matmul`), when one is on the stack.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Site {
    pub frames: Vec<Frame>,
    pub op: Option<String>,
}

impl Site {
    /// The innermost frame of the program itself (not ttnn's own Python), the line a user
    /// reads as "allocated at".
    pub fn user_frame(&self) -> Option<&Frame> {
        self.frames
            .iter()
            .find(|f| !is_library_file(&f.file))
            .or(self.frames.first())
    }

    /// `model.py:42 in forward (ttnn.matmul)`.
    pub fn describe(&self) -> String {
        let mut s = match self.user_frame() {
            Some(f) => format!("{}:{} in {}", short_file(&f.file), f.line, f.function),
            None => "unknown site".to_string(),
        };
        if let Some(op) = &self.op {
            s.push_str(&format!(" ({op})"));
        }
        s
    }
}

impl Site {
    /// Files of installed packages and of the interpreter itself, which are not where a user
    /// looks for the line that allocated.
    pub fn is_library_file(file: &str) -> bool {
        is_library_file(file)
    }
}

fn is_library_file(file: &str) -> bool {
    file.contains("/site-packages/")
        || file.contains("/dist-packages/")
        || file.contains("/lib/python3.")
        || file.starts_with('<')
}

/// The file name without its directories.
fn short_file(file: &str) -> &str {
    file.rsplit('/').next().unwrap_or(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(file: &str, line: u32, function: &str) -> Frame {
        Frame {
            file: file.into(),
            function: function.into(),
            line,
        }
    }

    #[test]
    fn the_user_line_skips_library_frames() {
        let site = Site {
            frames: vec![
                frame(
                    "/v/lib/python3.12/site-packages/ttnn/decorators.py",
                    300,
                    "__call__",
                ),
                frame("/home/u/model.py", 42, "forward"),
                frame("/home/u/main.py", 7, "<module>"),
            ],
            op: Some("ttnn.matmul".into()),
        };
        assert_eq!(site.describe(), "model.py:42 in forward (ttnn.matmul)");
    }

    #[test]
    fn a_stack_of_library_frames_only_names_the_innermost() {
        let site = Site {
            frames: vec![frame("/v/site-packages/ttnn/x.py", 3, "f")],
            op: None,
        };
        assert_eq!(site.describe(), "x.py:3 in f");
        assert_eq!(Site::default().describe(), "unknown site");
    }
}
