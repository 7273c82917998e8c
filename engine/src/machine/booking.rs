//! Scheduled services: the timers `scheduled` waits for (queue entry and
//! reminder), rescheduling, and the appointment reminder.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

use super::{after, AppointmentChange, Context, Effect, Service};
use crate::record::*;

impl Service {
    /// Arms what `scheduled` waits for: entering the queue (at the desired
    /// time, or at the booked slot less its buffer) and the reminder.
    pub(super) fn arm_schedule(&mut self, context: &mut Context) {
        let entry = self
            .rec
            .booking
            .as_ref()
            .map_or(self.rec.desired_time, |b| b.enter_queue_at);
        self.arm(context, TimerKind::DesiredTime, entry);
        self.disarm(context, TimerKind::Reminder);
        let reminder = self.rec.booking.as_ref().and_then(|b| b.reminder_at);
        if let Some(at) = reminder.filter(|at| *at > self.now) {
            self.arm(context, TimerKind::Reminder, at);
        }
    }

    pub(super) fn reschedule(
        &mut self,
        context: &mut Context,
        desired_time: DateTime<Utc>,
        booking: Option<Booking>,
    ) {
        let previous = self
            .rec
            .booking
            .as_ref()
            .map_or(self.rec.desired_time, |b| b.slot);
        let sequence = self.rec.booking.as_ref().map_or(0, |b| b.sequence + 1);
        self.rec.desired_time = desired_time;
        self.rec.expiration_time = after(desired_time, self.scenario.ttl);
        // The place in the queue is the new time's, as at creation.
        self.rec.ticket.since = desired_time.max(self.now);
        self.rec.booking = booking.map(|b| Box::new(Booking { sequence, ..b }));
        let expires = self.rec.expiration_time;
        self.arm(context, TimerKind::Ttl, expires);
        self.arm_schedule(context);
        if self.rec.booking.is_some() {
            context.effects.push(Effect::Appointment {
                change: AppointmentChange::Rescheduled {
                    previous_start: previous,
                },
            });
        }
    }

    /// The reminder: an e-mail or SMS by the shell, and a notification in
    /// the device's outbox for an app that listens.
    pub(super) fn remind(&mut self, context: &mut Context) {
        let id = self.rec.id.clone();
        let booking = self.rec.booking.clone();
        let start = booking.as_ref().map_or(self.rec.desired_time, |b| b.slot);
        let join_url = booking.and_then(|b| b.join_url);
        // With milliseconds, as every other time on the wire: DateTime's own
        // serialization leaves them out of a whole second.
        let start = start.to_rfc3339_opts(SecondsFormat::Millis, true);
        self.notify_device(
            context,
            format!("service.reminder.{id}"),
            json!({"_id": id, "_action": "reminder", "_desired_time": start, "_join_url": join_url}),
        );
        context.effects.push(Effect::Appointment {
            change: AppointmentChange::Reminder,
        });
    }
}
