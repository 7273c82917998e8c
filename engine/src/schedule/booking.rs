//! Booking a slot: the rules a desired time passes before the store is
//! asked for a seat. The seat itself is taken by the store's write (it
//! refuses a full slot atomically), so a booking made here can still lose
//! the race for the last seat.

use chrono::{DateTime, Utc};

use super::{Schedule, Tz};
use crate::record::Booking;

/// Why a desired time cannot be booked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookingRefused {
    /// No open slot holds the time.
    Closed,
    /// Its slot starts before `now + min_notice`.
    TooSoon,
    /// Its slot starts after `now + horizon`.
    TooFar,
}

impl Schedule {
    /// The booking of the slot holding `t`, bookable at `now`. `zone` is
    /// the customer's, for the times shown to them. The join link is built
    /// on `base_url`, which goes out in e-mails: the configured public URL
    /// (or the listen address), never a request's Host header.
    pub fn book(
        &self,
        t: DateTime<Utc>,
        now: DateTime<Utc>,
        zone: Tz,
        service_id: &str,
        base_url: &str,
    ) -> Result<Booking, BookingRefused> {
        let slot = self.slot_at(t).ok_or(BookingRefused::Closed)?;
        let (earliest, latest) = self.bookable(now);
        if slot.start < earliest {
            return Err(BookingRefused::TooSoon);
        }
        if slot.start > latest {
            return Err(BookingRefused::TooFar);
        }
        Ok(Booking {
            slot: slot.start,
            slot_end: slot.end,
            seats: slot.seats,
            sequence: 0,
            enter_queue_at: slot.start - self.enter_queue(),
            reminder_at: self.reminder().map(|r| slot.start - r),
            join_url: self.render_join_url(base_url, service_id),
            timezone: zone.name().to_owned(),
            manage_token: None,
        })
    }

    /// The zone a customer sees times in: the one asked for, else the one
    /// their booking was made in, else the schedule's own.
    pub fn zone_for(&self, asked: Option<Tz>, booked: Option<&Booking>) -> Tz {
        asked
            .or_else(|| booked.and_then(|b| b.timezone.parse::<Tz>().ok()))
            .unwrap_or(self.timezone)
    }
}

impl Booking {
    /// This booking as the move of `old`: the link the customer already
    /// has (in e-mails and invites) stays valid.
    pub fn moved_from(self, old: Option<&Booking>) -> Booking {
        Booking {
            join_url: old.and_then(|b| b.join_url.clone()).or(self.join_url),
            manage_token: old
                .and_then(|b| b.manage_token.clone())
                .or(self.manage_token),
            ..self
        }
    }
}
