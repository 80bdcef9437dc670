//! The work behind the client tools whose command lines are in `cmd/`: archiving topics to
//! files (`to-file`) and to a database (`to-db`), and reporting cluster stats (`stat`).

pub mod stat;
pub mod to_db;
pub mod to_file;
