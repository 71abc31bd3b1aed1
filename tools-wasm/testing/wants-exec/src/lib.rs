//! A test guest that imports `exec`: the host must refuse to load it for a tool whose
//! grant has no exec, and when exec is granted it runs the command it is given (used to
//! block the guest inside a host call for the wall-clock test).

wit_bindgen::generate!({ world: "shell-tool", path: "../../wit" });

use exports::ssr::tool::tool::Guest;
use ssr::tool::exec;
use ssr::tool::types::{Description, ToolError};

struct WantsExec;

impl Guest for WantsExec {
    fn describe() -> Description {
        Description {
            name: "wants-exec".into(),
            description: "Test guest that runs its `command` argument through exec.".into(),
            parameters_schema: r#"{"type":"object"}"#.into(),
        }
    }

    fn call(arguments: String) -> Result<String, ToolError> {
        let args: serde_json::Value = serde_json::from_str(&arguments)
            .map_err(|e| ToolError::InvalidArguments(e.to_string()))?;
        let command = args["command"].as_str().unwrap_or("true");
        let r = exec::run(command, 600_000)?;
        Ok(format!("exit {:?}: {}", r.exit_code, r.stdout))
    }
}

export!(WantsExec);
