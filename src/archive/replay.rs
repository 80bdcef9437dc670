//! Queries behind `nsqrs replay`.
