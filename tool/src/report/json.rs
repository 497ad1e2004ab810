//! The JSON form of the report (schema 1).

use super::model::Report;

impl Report {
    /// The model as serialized, plus its answer. Keys come out sorted (serde_json's map).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::to_value(self).expect("the report model always serializes");
        json["answer"] = self.answer().into();
        json
    }
}
