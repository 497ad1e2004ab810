//! The JSON form of the report (schema 1).

use super::model::Report;

impl Report {
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::to_value(self).expect("the report model always serializes");
        json["answer"] = self.answer().into();
        json
    }

    /// Pretty-printed, newline-terminated.
    pub(crate) fn to_json_string(&self) -> String {
        let mut text =
            serde_json::to_string_pretty(&self.to_json()).expect("a JSON value always prints");
        text.push('\n');
        text
    }
}
