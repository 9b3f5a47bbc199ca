//! The pub/sub listener of an agent: forwards each message on its channels, resubscribes
//! (on the next node, for a cluster) after a loss, and stops when told.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use pool_core::{CancellationToken, Executor};

use crate::backoff::Backoff;
use crate::endpoint::Subscriptions;

/// A message received: its channel and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) channel: String,
    pub(crate) payload: String,
}

/// Calls `on_message` for every message on `channels` until `stop` is cancelled. After each
/// (re)subscription it also calls it once with an empty message: something may have been
/// published while nobody listened.
pub(crate) async fn subscribe(
    mut subscriptions: Subscriptions,
    channels: Vec<String>,
    executor: Arc<dyn Executor>,
    stop: CancellationToken,
    on_message: impl Fn(Message) + Send + 'static,
) {
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
    let listen = async {
        loop {
            match subscriptions.subscribe(&channels).await {
                Ok(pubsub) => {
                    backoff.reset();
                    on_message(Message {
                        channel: String::new(),
                        payload: String::new(),
                    });
                    let mut messages = pubsub.into_on_message();
                    while let Some(message) = messages.next().await {
                        on_message(Message {
                            channel: message.get_channel_name().to_owned(),
                            payload: message.get_payload().unwrap_or_default(),
                        });
                    }
                    tracing::debug!(?channels, "pool-redis: subscription lost");
                }
                Err(error) => {
                    tracing::debug!(
                        ?channels,
                        endpoint = %subscriptions.endpoint(),
                        %error,
                        "pool-redis: subscribe failed"
                    );
                }
            }
            executor.sleep(backoff.next_delay()).await;
        }
    };
    tokio::select! {
        () = listen => {}
        () = stop.cancelled() => {}
    }
}
