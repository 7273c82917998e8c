//! Appointment effects turned into notices, as a scenario's
//! `_schedule.notifications` say.

use engine::machine;
use engine::record::ServiceRecord;
use tracing::warn;

use super::Shell;

impl Shell {
    /// Tells the customer and the agents about a booked appointment, as the
    /// scenario's `_schedule.notifications` say. Sent in the background:
    /// SMTP must not hold up the request. A node that dies between the write
    /// and the send loses that message (see docs/bookings.md).
    pub(super) async fn appointment(
        &self,
        record: &ServiceRecord,
        change: &machine::AppointmentChange,
    ) {
        use crate::notices::{AppointmentNotice, NoticeKind, SmsTarget};
        use machine::AppointmentChange as C;
        let (Some(booking), Some(schedule)) = (
            record.booking.as_ref(),
            self.scenarios
                .get(&record.scenario)
                .and_then(|s| s.schedule.as_ref()),
        ) else {
            return;
        };
        let n = &schedule.notifications;
        let field = |name: &str| field_of(record, name);
        let kind = match change {
            C::Booked => NoticeKind::Booked,
            C::Rescheduled { previous_start } => NoticeKind::Rescheduled {
                previous_start: *previous_start,
            },
            C::Cancelled => NoticeKind::Cancelled,
            C::Reminder => NoticeKind::Reminder,
        };
        let reminder = kind == NoticeKind::Reminder;
        let customer_email = if (reminder && n.reminder_email) || (!reminder && n.customer_email) {
            field(&n.email_field)
        } else {
            None
        };
        let agent_emails = if n.agent_email && !reminder {
            match self.store.agents().await {
                Ok(agents) => agents
                    .into_iter()
                    .filter(|a| a.profile.queues.contains(&record.ticket.queue))
                    .filter_map(|a| a.profile.email)
                    .collect(),
                Err(e) => {
                    warn!(service_id = %record.id, error = %e, "Agents for the invite could not be read.");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let sms = match (&n.sms_url, reminder && n.reminder_sms) {
            (Some(url), true) => field(&n.phone_field).map(|to| SmsTarget {
                url: url.clone(),
                to,
            }),
            _ => None,
        };
        if customer_email.is_none() && agent_emails.is_empty() && sms.is_none() {
            return;
        }
        let timezone = booking.timezone.parse().unwrap_or(schedule.timezone);
        self.notifier.spawn(AppointmentNotice {
            kind,
            service_id: record.id.clone(),
            title: schedule.title.clone(),
            start: booking.slot,
            end: booking.slot_end,
            timezone,
            sequence: booking.sequence,
            join_url: booking.join_url.clone(),
            manage_url: booking
                .manage_token
                .as_deref()
                .map(|token| crate::notices::manage_url(self.rooms.link_base(), &record.id, token)),
            customer_name: field(&n.name_field),
            customer_email,
            agent_emails,
            sms,
        });
    }

    /// The booking's invite (ICS) as the customer's e-mail carries it, for
    /// an "add to calendar" download: the booking as it is now, cancelled
    /// if it was cancelled. `None` for a service without a booking.
    pub fn booking_invite(&self, record: &ServiceRecord) -> Option<String> {
        use crate::notices::{AppointmentNotice, NoticeKind};
        let booking = record.booking.as_ref()?;
        let schedule = self.scenarios.get(&record.scenario)?.schedule.as_ref()?;
        let n = &schedule.notifications;
        let cancelled = record.state == engine::record::ServiceState::Completed
            && record.reason == Some(engine::record::CallbackReason::Cancelled);
        let field = |name: &str| field_of(record, name);
        let manage_url = booking
            .manage_token
            .as_deref()
            .map(|token| crate::notices::manage_url(self.rooms.link_base(), &record.id, token));
        let notice = AppointmentNotice {
            kind: if cancelled {
                NoticeKind::Cancelled
            } else {
                NoticeKind::Booked
            },
            service_id: record.id.clone(),
            title: schedule.title.clone(),
            start: booking.slot,
            end: booking.slot_end,
            timezone: booking.timezone.parse().unwrap_or(schedule.timezone),
            sequence: booking.sequence,
            join_url: booking.join_url.clone(),
            manage_url,
            customer_name: field(&n.name_field),
            customer_email: field(&n.email_field),
            agent_emails: Vec::new(),
            sms: None,
        };
        crate::notices::ics_for(&notice, &self.notifier.organizer(), true)
    }
}

/// A create field the notices name (`email_field`, `name_field`,
/// `phone_field`): the number, or user data; trimmed, and none when empty.
fn field_of(record: &ServiceRecord, name: &str) -> Option<String> {
    let value = if name == "_customer_number" {
        Some(record.customer_number.clone())
    } else {
        record.user_data.get(name).cloned()
    };
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}
