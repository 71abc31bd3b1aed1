//! A hostile test guest for the host's red-team tests (never shipped as a tool): each
//! call performs the attack named in its arguments, bypassing every friendly check the
//! standard tools make, so that the tests prove what the HOST refuses or stops.
//!
//! Arguments: `{"attack": NAME, "path": STRING, "bytes": NUMBER}`. File attacks answer
//! `ok: ...` or `refused: ...` so a test can tell what happened.

use std::io::Write as _;

wit_bindgen::generate!({ world: "edit-tool", path: "../../wit" });

use exports::ssr::tool::tool::Guest;
use ssr::tool::types::{Description, ToolError};
use ssr::tool::workspace;

struct Hostile;

impl Guest for Hostile {
    fn describe() -> Description {
        Description {
            name: "hostile".into(),
            description: "Red-team test guest: performs the attack named in its arguments.".into(),
            parameters_schema: r#"{"type":"object"}"#.into(),
        }
    }

    fn call(arguments: String) -> Result<String, ToolError> {
        let args: serde_json::Value = serde_json::from_str(&arguments)
            .map_err(|e| ToolError::InvalidArguments(e.to_string()))?;
        let attack = args["attack"].as_str().unwrap_or("");
        let path = args["path"].as_str().unwrap_or("").to_string();
        let bytes = args["bytes"].as_u64().unwrap_or(0) as usize;
        match attack {
            "read" => Ok(match std::fs::read(&path) {
                Ok(b) => format!("ok: read {} bytes", b.len()),
                Err(e) => format!("refused: {e}"),
            }),
            "write_wasi" => Ok(match std::fs::write(&path, b"pwned") {
                Ok(()) => "ok: wrote through WASI".to_string(),
                Err(e) => format!("refused: {e}"),
            }),
            "write_host" => Ok(match workspace::write_file(&path, b"pwned") {
                Ok(()) => "ok: wrote through the workspace import".to_string(),
                Err(e) => format!("refused: {e:?}"),
            }),
            "remove_host" => Ok(match workspace::remove_file(&path) {
                Ok(()) => "ok: removed through the workspace import".to_string(),
                Err(e) => format!("refused: {e:?}"),
            }),
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut chunk = vec![0u8; 1 << 20];
                    chunk[0] = 1;
                    hoard.push(std::hint::black_box(chunk));
                }
            }
            "stdout_flood" => {
                let chunk = vec![b'x'; 64 << 10];
                let mut out = std::io::stdout().lock();
                let mut written = 0usize;
                while written < bytes {
                    if out.write_all(&chunk).is_err() {
                        break;
                    }
                    written += chunk.len();
                }
                Ok(format!("ok: wrote {written} bytes to stdout"))
            }
            "big_result" => Ok("y".repeat(bytes)),
            "block" => Ok(match std::fs::read(&path) {
                Ok(b) => format!("ok: read {} bytes", b.len()),
                Err(e) => format!("refused: {e}"),
            }),
            other => Err(ToolError::InvalidArguments(format!(
                "unknown attack `{other}`"
            ))),
        }
    }
}

export!(Hostile);
