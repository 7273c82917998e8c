//! What the seed's apps send, to the letter, for the tests that replay it:
//! its device id, its start-chat form, its internal notification.

/// The device id (`_device_notification_id`, later `gms_user`) of the seed's app.
pub const DEVICE: &str = examples::mobile_app::SEED_DEVICE_ID;

/// The seed's start-chat form (`ixn/chat`, or the `_start_chat_url`).
pub const START_CHAT: [(&str, &str); 6] = [
    ("notify_by", "comet"),
    ("firstName", "John"),
    ("lastName", "Harry"),
    ("_verbose", "false"),
    ("subject", "testing"),
    ("email", "j.h@gmail.com"),
];

/// The seed's internal-notification form.
pub const INTERNAL_NOTIFICATION: [(&str, &str); 2] = [
    ("_display_message", "Message to be displayed to user"),
    (
        "_application_message",
        "MESSAGE_FOR_MOBILE_APP_INTERNAL_USE",
    ),
];
