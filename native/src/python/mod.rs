//! The PyO3 layer: Python objects in, the pure core's answers out, nothing decided here
//! that the core could decide. Three classes and a function, as the Python side sees them:
//!
//! * `LineReader` (`reader.rs`): a read's lines → a `ChatChunk`;
//! * `ChatEncoder` (`encoder.rs`): a chunk's PRIVMSG lines → their Kafka records;
//! * `frame_records` (`frames.rs`): a batch of records → the disk buffer's frames.

mod encoder;
mod frames;
mod reader;

use pyo3::prelude::*;
use pyo3::types::PyString;

/// A str's UTF-8 text. A str with lone surrogates (never from a strict UTF-8 decode) has
/// none: its line is left to Python.
fn as_str<'a>(value: &'a Bound<'_, PyAny>) -> Option<&'a str> {
    value.cast::<PyString>().ok()?.to_str().ok()
}

#[pymodule]
fn twitch_ingestion_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<encoder::ChatEncoder>()?;
    module.add_class::<reader::LineReader>()?;
    module.add_class::<reader::ChatChunk>()?;
    module.add_function(wrap_pyfunction!(frames::frame_records, module)?)?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
