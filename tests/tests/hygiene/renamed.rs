//! The same with `remote_core` reached as `rc` (`#[remote(crate = "::rc")]`,
//! `#[wire(crate = "::rc")]`).
#![no_implicit_prelude]
#![allow(dead_code)]

pub(crate) struct Result;
pub(crate) struct Box;
pub(crate) mod core {}

use ::rc::{remote, Wire};

/// A value.
#[derive(Wire, Debug, PartialEq)]
#[wire(crate = "::rc")]
pub(crate) struct Note {
    pub(crate) text: ::std::string::String,
}

/// An interface.
#[remote(crate = "::rc")]
pub(crate) trait Notes {
    async fn add(&self, note: Note) -> ::core::result::Result<usize, ::rc::Error>;
    fn count(&self) -> ::core::result::Result<usize, ::rc::Error>;
}

/// Its implementation.
#[derive(Debug, Default)]
pub(crate) struct NoteBook {
    pub(crate) notes: ::std::sync::Mutex<::std::vec::Vec<Note>>,
}

#[remote(crate = "::rc")]
impl Notes for NoteBook {
    async fn add(&self, note: Note) -> ::core::result::Result<usize, ::rc::Error> {
        let mut v = self.notes.lock().unwrap();
        v.push(note);
        ::core::result::Result::Ok(v.len())
    }
    fn count(&self) -> ::core::result::Result<usize, ::rc::Error> {
        ::core::result::Result::Ok(self.notes.lock().unwrap().len())
    }
}
