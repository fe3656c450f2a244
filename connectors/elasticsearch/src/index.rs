//! The index name template: literal text, date parts of the record's time, record fields
//! (the SDK's [`DatedTemplate`], errors under the `index` option).

use sluice_sdk::template::DatedTemplate;
use sluice_sdk::ConfigError;

pub type IndexTemplate = DatedTemplate;

/// Parses the `index` option.
pub fn parse(text: &str) -> Result<IndexTemplate, ConfigError> {
    DatedTemplate::parse(text, "index")
}
