//! Queries behind `nsqrs trace`.
