//! The JSON form of the report (schema 1).

use super::model::Report;

impl Report {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("the report model always serializes")
    }

    /// Pretty-printed, newline-terminated.
    pub fn to_json_string(&self) -> String {
        let mut text =
            serde_json::to_string_pretty(self).expect("the report model always serializes");
        text.push('\n');
        text
    }
}
