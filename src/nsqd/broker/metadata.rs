//! `nsqd.dat`: the topics, channels and paused flags, in nsqd's own JSON format so the data
//! directory stays readable by NSQ tooling. Written atomically (temp file, fsync, rename).
//! Go nsqd writes `"channels":null` for a topic without channels (a nil slice), so a list
//! may be null as well as absent.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

/// A JSON list that Go may have written as `null`.
fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Metadata {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub topics: Vec<TopicMeta>,
    #[serde(default)]
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopicMeta {
    pub name: String,
    #[serde(default)]
    pub paused: bool,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub channels: Vec<ChannelMeta>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChannelMeta {
    pub name: String,
    #[serde(default)]
    pub paused: bool,
}

pub const FILE_NAME: &str = "nsqd.dat";

pub fn load(data_dir: &Path) -> Result<Option<Metadata>, String> {
    let path = data_dir.join(FILE_NAME);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("failed to parse metadata {} - {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("failed to read metadata {} - {e}", path.display())),
    }
}

pub fn save(data_dir: &Path, meta: &Metadata) -> std::io::Result<()> {
    let path = data_dir.join(FILE_NAME);
    let tmp = data_dir.join(format!("{FILE_NAME}.{}.tmp", rand::random::<u32>()));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(meta)?)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_nil_lists_read_as_empty() {
        let text =
            r#"{"topics":[{"name":"lonely","paused":false,"channels":null},{"name":"t"}],"version":"1.3.0"}"#;
        let meta: Metadata = serde_json::from_str(text).unwrap();
        assert!(meta.topics[0].channels.is_empty() && meta.topics[1].channels.is_empty());
        let meta: Metadata = serde_json::from_str(r#"{"topics":null,"version":"1.3.0"}"#).unwrap();
        assert!(meta.topics.is_empty());
    }
}
