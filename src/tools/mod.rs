//! The work behind the client tools whose command lines are in `cmd/`: archiving topics to
//! files (`to-file`) and to a database (`to-db`), copying them to other brokers and HTTP
//! endpoints (`to-nsq`, `to-http`), and reporting cluster stats (`stat`).

pub mod forward;
pub mod stat;
pub mod to_db;
pub mod to_file;
