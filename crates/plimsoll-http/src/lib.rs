//! The HTTP wire formats of plimsoll (being written).
