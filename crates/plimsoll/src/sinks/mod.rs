//! Event sinks: the event stream file, the on-event command, the webhook (being written).
