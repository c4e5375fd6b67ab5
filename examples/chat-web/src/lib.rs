//! The chat example's browser client: the same `Chat` proxy the terminal
//! client uses (`dyn RemoteList<Message>`), compiled to wasm32 and called
//! from a page (`static/index.html`) over `ws://`.
//!
//! The page is plain HTML and a few lines of JavaScript; everything that
//! talks to the server is here, in Rust. The page serves an object too:
//! its `on_push` listener, which the server calls for every new message.

use std::time::Duration;

use remote_core::collections::on_push;
use remote_core::{Connection, ConnectionBuilder, Limits, Remote};
use wasm_bindgen::prelude::*;

#[path = "../../chat_types.rs"]
pub mod chat;

use chat::{Chat, Message};

/// How many earlier messages a page shows when it joins.
const BACKLOG: u64 = 20;

/// A page's connection to the chat server.
#[wasm_bindgen]
#[derive(Debug, Clone)]
pub struct ChatPage {
    conn: Connection,
    chat: Remote<Chat>,
    name: String,
}

fn js_err(e: remote_core::Error) -> JsValue {
    JsValue::from(JsError::new(&e.to_string()))
}

#[wasm_bindgen]
impl ChatPage {
    /// Connects to the chat server at `url` (`ws://host:port/`) as `name`:
    /// calls `on_message(user, text)` for the last messages, then for
    /// every message posted from now on (the page's own included).
    pub async fn connect(
        url: String,
        name: String,
        on_message: js_sys::Function,
    ) -> Result<ChatPage, JsValue> {
        console_error_panic_hook::set_once();
        let limits = Limits {
            // A page may sit quiet for long; keepalive pings still run.
            idle_timeout: Duration::from_secs(24 * 3600),
            ..Limits::default()
        };
        let conn = ConnectionBuilder::new()
            .limits(limits)
            .connect(&url)
            .await
            .map_err(js_err)?;
        let chat = conn.root::<Chat>();
        // The server calls the listener from its own calls; the page's
        // JavaScript function stays on the page's thread, fed by a channel.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Message>();
        wasm_bindgen_futures::spawn_local(async move {
            while let Some(m) = rx.recv().await {
                let _ = on_message.call2(
                    &JsValue::NULL,
                    &JsValue::from_str(m.user.as_str()),
                    &JsValue::from_str(m.text.as_str()),
                );
            }
        });
        let count = chat.len().await.map_err(js_err)?;
        for m in chat
            .range(count.saturating_sub(BACKLOG), count)
            .await
            .map_err(js_err)?
        {
            let _ = tx.send(m);
        }
        chat.subscribe(on_push(move |_, m: Message| {
            let _ = tx.send(m);
        }))
        .await
        .map_err(js_err)?;
        Ok(ChatPage { conn, chat, name })
    }

    /// Posts `text`; resolves when the server has stored it.
    pub fn post(&self, text: String) -> js_sys::Promise {
        let (chat, name) = (self.chat.clone(), self.name.clone());
        wasm_bindgen_futures::future_to_promise(async move {
            let index = chat.push(Message::new(name, text)).await.map_err(js_err)?;
            Ok(JsValue::from_f64(index as f64))
        })
    }

    /// Resolves with the reason when the connection ends.
    pub fn closed(&self) -> js_sys::Promise {
        let conn = self.conn.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            Ok(JsValue::from_str(&conn.closed().await.to_string()))
        })
    }

    /// Says goodbye and closes the connection.
    pub fn close(&self) {
        self.conn.close();
    }
}
