//! Who the target runs as: `--user`, else the user who invoked sudo. Tracing needs root,
//! but the program under test should behave as it does for its real user.

use crate::{exit_code::UsageError, target::RunAs};

pub(crate) fn resolve(requested: Option<&str>) -> Result<Option<RunAs>, UsageError> {
    let from_sudo = std::env::var("SUDO_USER")
        .ok()
        .filter(|user| !user.is_empty() && user != "root");
    let Some(name) = requested.map(str::to_owned).or(from_sudo) else {
        return Ok(None);
    };
    match nix::unistd::User::from_name(&name) {
        Ok(Some(user)) => Ok(Some(RunAs {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })),
        Ok(None) => Err(UsageError(format!("--user {name}: no such user"))),
        Err(error) => Err(UsageError(format!(
            "--user {name}: cannot look the user up: {error}"
        ))),
    }
}
