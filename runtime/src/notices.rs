//! Appointment notices for booked callbacks: an RFC 5545 invite, e-mail
//! over SMTP and SMS through an HTTP endpoint.
//!
//! The rest of callbackd decides *when* a notice goes out (booked, moved,
//! cancelled, a reminder before the slot); this module only renders and
//! sends. Sending never fails the caller: a request handler books the slot
//! and calls [`Notifier::spawn`], and a mail server that is down must not
//! turn a booking into an error. Failures are logged and counted instead.
//!
//! All notices of one service share the ICS UID `<service_id>@callbackd`,
//! so calendar clients update (or remove) the event they already hold; the
//! caller raises `sequence` on every reschedule or cancellation, which is
//! how clients tell the newer invite from the older one.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use engine::pii::masked;
use icalendar::{Alarm, Calendar, Component, EventLike, EventStatus, Property, Related};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use push::outbound::{HttpPost, PostError};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

/// Why a notice goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeKind {
    Booked,
    Rescheduled { previous_start: DateTime<Utc> },
    Cancelled,
    Reminder,
}

impl NoticeKind {
    /// The lower-case name used in logs and in the SMS body's `kind`.
    pub fn name(&self) -> &'static str {
        match self {
            NoticeKind::Booked => "booked",
            NoticeKind::Rescheduled { .. } => "rescheduled",
            NoticeKind::Cancelled => "cancelled",
            NoticeKind::Reminder => "reminder",
        }
    }

    /// The ICS METHOD, or None when the notice carries no invite.
    fn method(&self) -> Option<&'static str> {
        match self {
            NoticeKind::Booked | NoticeKind::Rescheduled { .. } => Some("REQUEST"),
            NoticeKind::Cancelled => Some("CANCEL"),
            NoticeKind::Reminder => None,
        }
    }
}

/// The customer's link to a booking (the `/booking/{id}` page), with the
/// booking's secret.
pub fn manage_url(link_base: &str, service_id: &str, token: &str) -> String {
    format!("{link_base}/booking/{service_id}?token={token}")
}

/// Everything needed to render and send one notice.
#[derive(Debug, Clone)]
pub struct AppointmentNotice {
    pub kind: NoticeKind,
    pub service_id: String,
    /// e.g. "Video appointment".
    pub title: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Times in the mail and SMS text are shown in this zone, with its name.
    pub timezone: Tz,
    /// ICS SEQUENCE: 0 when booked, +1 per reschedule or cancellation.
    pub sequence: u32,
    pub join_url: Option<String>,
    /// The customer's link to see, move or cancel the booking; only in
    /// what the customer gets.
    pub manage_url: Option<String>,
    pub customer_name: Option<String>,
    /// None: no customer e-mail.
    pub customer_email: Option<String>,
    /// Empty: no agent e-mail. Each agent gets a message of its own.
    pub agent_emails: Vec<String>,
    /// Set for notices (in practice reminders) that also go by SMS.
    pub sms: Option<SmsTarget>,
}

/// Where an SMS goes: the gateway's URL and the customer's number.
#[derive(Debug, Clone)]
pub struct SmsTarget {
    pub url: String,
    pub to: String,
}

/// The SMTP relay and the sender.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// A lettre connection URL: `smtp://host:port` (plain), `smtps://user:pass@host`
    /// (implicit TLS), `smtp://host:587?tls=required` (STARTTLS). `?tls=none`
    /// is accepted as an explicit spelling of plain SMTP.
    pub smtp_url: String,
    /// e.g. `callbackd <noreply@example.com>`; also the ICS ORGANIZER.
    pub from: String,
}

/// Messages that reached the relay (or the SMS gateway), messages given up
/// on, and messages never tried (no mail config, bad address).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotifierStats {
    pub sent: u64,
    pub failed: u64,
    pub skipped: u64,
}

/// Why one attempt at one message failed; `transient` ones are retried.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("SMS gateway: {0}")]
    Http(#[from] PostError),
    #[error("SMS gateway answered {0}")]
    Status(u16),
}

impl SendError {
    fn transient(&self) -> bool {
        match self {
            // 5xx replies and messages lettre refuses to build will fail
            // the same way again; 4xx, dropped connections, TLS hiccups and
            // timeouts may not.
            SendError::Smtp(e) => !(e.is_permanent() || e.is_client()),
            SendError::Http(e) => e.transient,
            // A gateway that is overloaded or restarting answers 408/429/5xx;
            // any other 4xx is about the request and repeats.
            SendError::Status(s) => (500..600).contains(s) || *s == 429 || *s == 408,
        }
    }
}

const ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Messages being sent at once, across all notices: a burst of bookings
/// must not open hundreds of SMTP connections.
const IN_FLIGHT: usize = 64;
const SMS_TIMEOUT: Duration = Duration::from_secs(5);
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The display alarm put into invites, before the start.
const ALARM_BEFORE: chrono::Duration = chrono::Duration::minutes(15);
const PRODID: &str = "-//callbackd//appointments//EN";

struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

/// Renders and sends appointment notices. Share it in an `Arc`.
pub struct Notifier {
    mailer: Option<Mailer>,
    /// Posts SMS to the gateway (`http-front` supplies the HTTP client).
    http: Arc<dyn HttpPost>,
    in_flight: Semaphore,
    backoff: Duration,
    sent: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
}

impl Notifier {
    /// Fails (one clear line) on a malformed SMTP URL or from address.
    /// Connects to nothing yet: the relay is reached at the first message.
    /// Call it inside a tokio runtime: lettre's connection pool spawns its
    /// reaper task when built (and would panic outside one).
    /// `http` posts SMS to the gateway.
    pub fn new(mail: Option<MailConfig>, http: Arc<dyn HttpPost>) -> anyhow::Result<Notifier> {
        if mail.is_some() {
            tokio::runtime::Handle::try_current()
                .context("Notifier::new with a mail config needs a tokio runtime")?;
        }
        let mailer = match mail {
            None => None,
            Some(config) => {
                let from: Mailbox = config
                    .from
                    .parse()
                    .with_context(|| format!("invalid mail from address {:?}", config.from))?;
                let url = plain_smtp_alias(&config.smtp_url);
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url)
                    .with_context(|| format!("invalid SMTP URL {:?}", redact(&config.smtp_url)))?
                    .timeout(Some(SMTP_TIMEOUT))
                    .build();
                Some(Mailer { transport, from })
            }
        };
        Ok(Notifier {
            mailer,
            http,
            in_flight: Semaphore::new(IN_FLIGHT),
            backoff: FIRST_BACKOFF,
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        })
    }

    /// The first retry delay (doubled for each further retry); 1 s unless
    /// changed, tests make it short.
    pub fn with_backoff(mut self, first: Duration) -> Notifier {
        self.backoff = first;
        self
    }

    /// Whether e-mails can go out at all.
    /// Who an invite names as its organizer: the mail's From, else
    /// callbackd itself.
    pub fn organizer(&self) -> String {
        match &self.mailer {
            Some(m) => m.from.to_string(),
            None => "callbackd <callbackd@localhost>".to_owned(),
        }
    }

    pub fn mail_configured(&self) -> bool {
        self.mailer.is_some()
    }

    pub fn stats(&self) -> NotifierStats {
        NotifierStats {
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
        }
    }

    /// Spawns [`Notifier::send`] on tokio: the caller is a request handler
    /// that must not wait on SMTP.
    pub fn spawn(self: &Arc<Self>, notice: AppointmentNotice) {
        let notifier = self.clone();
        tokio::spawn(async move { notifier.send(notice).await });
    }

    /// Renders and sends everything the notice asks for: the customer's
    /// e-mail, one e-mail per agent (not for reminders), the SMS. Each
    /// message is retried on a transient failure; what still fails is
    /// logged and counted, never returned.
    pub async fn send(&self, notice: AppointmentNotice) {
        let mut mails = Vec::new();
        let wants_mail = notice.customer_email.is_some()
            || (notice.kind != NoticeKind::Reminder && !notice.agent_emails.is_empty());
        match &self.mailer {
            Some(mailer) if wants_mail => mails = self.render_mails(mailer, &notice),
            Some(_) => {}
            None if wants_mail => {
                let count = usize::from(notice.customer_email.is_some())
                    + if notice.kind == NoticeKind::Reminder {
                        0
                    } else {
                        notice.agent_emails.len()
                    };
                self.skipped.fetch_add(count as u64, Ordering::Relaxed);
                metrics::counter!(crate::metrics::NOTICES, "channel" => "email", "outcome" => "skipped").increment(count as u64);
                warn!(
                    service_id = %notice.service_id,
                    kind = notice.kind.name(),
                    skipped = count,
                    "No mail server configured; appointment e-mails skipped."
                );
            }
            None => {}
        }

        let mail_sends = mails.into_iter().map(|(role, to, message)| {
            let notice = &notice;
            async move {
                let Some(mailer) = &self.mailer else { return };
                let delivered = self
                    .with_retries(notice, "e-mail", || async {
                        mailer
                            .transport
                            .send(message.clone())
                            .await
                            .map(drop)
                            .map_err(SendError::from)
                    })
                    .await;
                if delivered {
                    debug!(service_id = %notice.service_id, kind = notice.kind.name(), role, to = %masked(&to), "Appointment e-mail sent.");
                }
            }
        });
        let sms_send = async {
            if let Some(target) = &notice.sms {
                let body = sms_body(&notice, target);
                let delivered = self
                    .with_retries(&notice, "SMS", || async {
                        let status = self.http.post_json(&target.url, &body, SMS_TIMEOUT).await?;
                        if (200..300).contains(&status) {
                            Ok(())
                        } else {
                            Err(SendError::Status(status))
                        }
                    })
                    .await;
                if delivered {
                    debug!(service_id = %notice.service_id, kind = notice.kind.name(), "Appointment SMS sent.");
                }
            }
        };
        futures_util::future::join(futures_util::future::join_all(mail_sends), sms_send).await;
    }

    /// Runs `attempt` up to [`ATTEMPTS`] times with doubling backoff,
    /// holding an in-flight permit only while an attempt runs. Counts and
    /// logs the outcome; true when delivered.
    async fn with_retries<F, Fut>(&self, notice: &AppointmentNotice, what: &str, attempt: F) -> bool
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), SendError>>,
    {
        let mut delay = self.backoff;
        for n in 1..=ATTEMPTS {
            let result = {
                // The semaphore is never closed; a closed one would only
                // mean "no bound", so go on without a permit.
                let _permit = self.in_flight.acquire().await.ok();
                attempt().await
            };
            match result {
                Ok(()) => {
                    self.sent.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(crate::metrics::NOTICES, "channel" => channel(what), "outcome" => "sent").increment(1);
                    return true;
                }
                Err(e) if e.transient() && n < ATTEMPTS => {
                    debug!(service_id = %notice.service_id, kind = notice.kind.name(), attempt = n, error = %e, "Appointment {what} failed; retrying.");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                }
                Err(e) => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(crate::metrics::NOTICES, "channel" => channel(what), "outcome" => "failed").increment(1);
                    warn!(service_id = %notice.service_id, kind = notice.kind.name(), attempts = n, error = %e, "Appointment {what} failed.");
                    return false;
                }
            }
        }
        false
    }

    /// The messages to send: (role, recipient, message). Bad addresses are
    /// logged, counted as skipped and left out.
    fn render_mails(
        &self,
        mailer: &Mailer,
        notice: &AppointmentNotice,
    ) -> Vec<(&'static str, String, Message)> {
        let organizer = mailer.from.to_string();
        let invite = ics(notice, &organizer);
        let customer_invite = ics_for(notice, &organizer, true);
        let mut out = Vec::new();
        let mut recipients: Vec<(&'static str, &str)> = Vec::new();
        if let Some(email) = &notice.customer_email {
            recipients.push(("customer", email));
        }
        if notice.kind != NoticeKind::Reminder {
            recipients.extend(notice.agent_emails.iter().map(|e| ("agent", e.as_str())));
        }
        for (role, address) in recipients {
            let to: Mailbox = match address.trim().parse() {
                Ok(to) => to,
                Err(e) => {
                    self.skipped.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(crate::metrics::NOTICES, "channel" => "email", "outcome" => "skipped").increment(1);
                    // The parser's error may quote the address: log neither whole.
                    let _ = e;
                    warn!(service_id = %notice.service_id, role, address = %masked(address), "Appointment e-mail skipped: bad address.");
                    continue;
                }
            };
            let (subject, text) = if role == "customer" {
                (customer_subject(notice), customer_text(notice))
            } else {
                (agent_subject(notice), agent_text(notice))
            };
            match build_message(
                &mailer.from,
                to.clone(),
                &subject,
                text,
                notice,
                if role == "customer" {
                    customer_invite.as_deref()
                } else {
                    invite.as_deref()
                },
            ) {
                Ok(message) => out.push((role, to.email.to_string(), message)),
                Err(e) => {
                    self.skipped.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(crate::metrics::NOTICES, "channel" => "email", "outcome" => "skipped").increment(1);
                    warn!(service_id = %notice.service_id, role, error = %e, "Appointment e-mail could not be built.");
                }
            }
        }
        out
    }
}

/// The `channel` label of a notice: what [`Notifier::with_retries`] calls it.
fn channel(what: &str) -> &'static str {
    if what == "SMS" {
        "sms"
    } else {
        "email"
    }
}

fn build_message(
    from: &Mailbox,
    to: Mailbox,
    subject: &str,
    text: String,
    notice: &AppointmentNotice,
    invite: Option<&str>,
) -> Result<Message, lettre::error::Error> {
    // Built once per recipient and cloned for each attempt, so a retry
    // after a lost 250 carries the same Message-ID and can be deduplicated.
    // The sender's domain, not this host's name (a container's, often).
    let message_id = format!("<{}@{}>", uuid::Uuid::new_v4(), from.email.domain());
    let builder = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject)
        .message_id(Some(message_id));
    match (invite, notice.kind.method()) {
        (Some(invite), Some(method)) => {
            // The ICS media type carries the method too (RFC 6047 §2.4):
            // clients match it against the METHOD inside.
            let content_type =
                ContentType::parse(&format!("text/calendar; method={method}; charset=UTF-8"))
                    .unwrap_or(ContentType::TEXT_PLAIN);
            builder.multipart(
                MultiPart::mixed()
                    .singlepart(SinglePart::plain(text))
                    .singlepart(
                        Attachment::new("invite.ics".to_owned())
                            .body(invite.to_owned(), content_type),
                    ),
            )
        }
        _ => builder.singlepart(SinglePart::plain(text)),
    }
}

/// lettre knows plain SMTP only as `smtp://` without `tls`; `?tls=none`
/// is the spelling operators reach for, so it means the same here.
fn plain_smtp_alias(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let rest: Vec<&str> = query.split('&').filter(|p| *p != "tls=none").collect();
    if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    }
}

/// The URL without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// `Mon 23 Nov 2026, 09:00–09:15 (America/New_York)`; the end gets its own
/// date when the slot crosses midnight in that zone.
pub fn local_span(start: DateTime<Utc>, end: DateTime<Utc>, tz: Tz) -> String {
    let (s, e) = (start.with_timezone(&tz), end.with_timezone(&tz));
    if end <= start {
        return local_time(start, tz);
    }
    if s.date_naive() == e.date_naive() {
        format!(
            "{}–{} ({})",
            s.format("%a %-d %b %Y, %H:%M"),
            e.format("%H:%M"),
            tz.name()
        )
    } else {
        format!(
            "{} – {} ({})",
            s.format("%a %-d %b %Y, %H:%M"),
            e.format("%a %-d %b %Y, %H:%M"),
            tz.name()
        )
    }
}

/// `Mon 23 Nov 2026, 09:00 (America/New_York)`.
pub fn local_time(at: DateTime<Utc>, tz: Tz) -> String {
    format!(
        "{} ({})",
        at.with_timezone(&tz).format("%a %-d %b %Y, %H:%M"),
        tz.name()
    )
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

pub fn customer_subject(notice: &AppointmentNotice) -> String {
    let title = one_line(&notice.title);
    match &notice.kind {
        NoticeKind::Booked => format!("Your {title} is booked"),
        NoticeKind::Rescheduled { .. } => format!("Your {title} has moved"),
        NoticeKind::Cancelled => format!("Your {title} is cancelled"),
        NoticeKind::Reminder => format!(
            "Reminder: {title} at {}",
            local_time(notice.start, notice.timezone)
        ),
    }
}

/// Agents see many of these: the subject says what happened, to whom, when.
pub fn agent_subject(notice: &AppointmentNotice) -> String {
    let title = one_line(&notice.title);
    let who = notice
        .customer_name
        .as_deref()
        .map(one_line)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "a customer".to_owned());
    let when = local_time(notice.start, notice.timezone);
    match &notice.kind {
        NoticeKind::Booked => format!("Booked: {title} with {who}, {when}"),
        NoticeKind::Rescheduled { .. } => format!("Moved: {title} with {who}, now {when}"),
        NoticeKind::Cancelled => format!("Cancelled: {title} with {who}, {when}"),
        NoticeKind::Reminder => format!("Reminder: {title} with {who}, {when}"),
    }
}

fn customer_text(notice: &AppointmentNotice) -> String {
    let title = one_line(&notice.title);
    let when = local_span(notice.start, notice.end, notice.timezone);
    let mut text = match notice.customer_name.as_deref().map(one_line) {
        Some(name) if !name.is_empty() => format!("Hello {name},\n\n"),
        _ => "Hello,\n\n".to_owned(),
    };
    match &notice.kind {
        NoticeKind::Booked => text.push_str(&format!("your {title} is booked for {when}.\n")),
        NoticeKind::Rescheduled { previous_start } => text.push_str(&format!(
            "your {title} has moved to {when}.\nIt was at {}.\n",
            local_time(*previous_start, notice.timezone)
        )),
        NoticeKind::Cancelled => text.push_str(&format!("your {title} on {when} is cancelled.\n")),
        NoticeKind::Reminder => text.push_str(&format!("a reminder: your {title} is at {when}.\n")),
    }
    if notice.kind != NoticeKind::Cancelled {
        if let Some(url) = &notice.join_url {
            text.push_str(&format!("\nJoin: {}\n", one_line(url)));
        }
        if let Some(url) = &notice.manage_url {
            text.push_str(&format!("Change or cancel: {}\n", one_line(url)));
        }
    }
    if notice.kind.method().is_some() {
        text.push_str("\nThe attached invite.ics updates your calendar.\n");
    }
    text
}

fn agent_text(notice: &AppointmentNotice) -> String {
    let title = one_line(&notice.title);
    let when = local_span(notice.start, notice.end, notice.timezone);
    let who = notice
        .customer_name
        .as_deref()
        .map(one_line)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "A customer".to_owned());
    let mut text = match &notice.kind {
        NoticeKind::Booked => format!("{who} booked a {title} for {when}.\n"),
        NoticeKind::Rescheduled { previous_start } => format!(
            "{who}'s {title} has moved to {when}.\nIt was at {}.\n",
            local_time(*previous_start, notice.timezone)
        ),
        NoticeKind::Cancelled => format!("{who}'s {title} on {when} is cancelled.\n"),
        NoticeKind::Reminder => format!("{who}'s {title} is at {when}.\n"),
    };
    if notice.kind != NoticeKind::Cancelled {
        if let Some(url) = &notice.join_url {
            text.push_str(&format!("\nJoin: {}\n", one_line(url)));
        }
    }
    text.push_str(&format!("\nService: {}\n", one_line(&notice.service_id)));
    text
}

fn sms_body(notice: &AppointmentNotice, target: &SmsTarget) -> serde_json::Value {
    let title = one_line(&notice.title);
    let when = local_time(notice.start, notice.timezone);
    let mut text = match &notice.kind {
        NoticeKind::Booked => format!("Your {title} is booked for {when}."),
        NoticeKind::Rescheduled { .. } => format!("Your {title} has moved to {when}."),
        NoticeKind::Cancelled => format!("Your {title} on {when} is cancelled."),
        NoticeKind::Reminder => format!("Reminder: your {title} is at {when}."),
    };
    if notice.kind != NoticeKind::Cancelled {
        if let Some(url) = &notice.join_url {
            text.push_str(&format!(" Join: {}", one_line(url)));
        }
    }
    serde_json::json!({
        "to": target.to,
        "text": text,
        "service_id": notice.service_id,
        "kind": notice.kind.name(),
    })
}

/// A TEXT value: line breaks kept as `\n` (icalendar escapes them), other
/// control characters dropped, since a raw CR would break the content line.
fn ics_text(s: &str) -> String {
    s.replace("\r\n", "\n")
        .chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect()
}

/// A URI or parameter value: no control characters, no DQUOTE (a parameter
/// value cannot hold one, RFC 5545 §3.1).
fn ics_atom(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() && *c != '"')
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The ICS UID of a service's appointment, the same on every notice.
pub fn ics_uid(service_id: &str) -> String {
    format!("{}@callbackd", ics_atom(service_id))
}

/// The ICS text for a notice (METHOD:REQUEST for Booked/Rescheduled,
/// METHOD:CANCEL with STATUS:CANCELLED for Cancelled); None for Reminder.
/// `organizer` is the sender, as `Name <address>` or a bare address.
pub fn ics(notice: &AppointmentNotice, organizer: &str) -> Option<String> {
    ics_for(notice, organizer, false)
}

/// The invite; the customer's copy (`for_customer`) also carries the
/// notice's link to change or cancel in its description.
pub fn ics_for(notice: &AppointmentNotice, organizer: &str, for_customer: bool) -> Option<String> {
    let manage_url = notice.manage_url.as_deref().filter(|_| for_customer);
    let method = notice.kind.method()?;
    let cancelled = notice.kind == NoticeKind::Cancelled;
    let title = ics_text(&notice.title);
    let join_url = notice
        .join_url
        .as_deref()
        .map(ics_atom)
        .filter(|u| !u.is_empty());

    let mut event = icalendar::Event::new();
    event
        .uid(&ics_uid(&notice.service_id))
        .sequence(notice.sequence)
        .timestamp(Utc::now())
        .starts(notice.start)
        .summary(&title)
        .status(if cancelled {
            EventStatus::Cancelled
        } else {
            EventStatus::Confirmed
        });
    // DTEND must be later than DTSTART (RFC 5545 §3.8.2.2); without it
    // the event is an instant, which is better than an invalid file.
    if notice.end > notice.start {
        event.ends(notice.end);
    }
    let mut description = match &notice.kind {
        NoticeKind::Cancelled => format!("{title} (cancelled)"),
        _ => title.clone(),
    };
    if let Some(url) = &join_url {
        event.url(url).location(url);
        if !cancelled {
            description.push_str(&format!("\nJoin: {url}"));
        }
    }
    if let Some(url) = manage_url.map(ics_atom).filter(|u| !u.is_empty()) {
        if !cancelled {
            description.push_str(&format!("\nChange or cancel: {url}"));
        }
    }
    event.description(&description);

    let (organizer_name, organizer_email) = match organizer.parse::<Mailbox>() {
        Ok(m) => (m.name, m.email.to_string()),
        Err(_) => (None, ics_atom(organizer)),
    };
    let mut organizer = Property::new("ORGANIZER", format!("mailto:{organizer_email}"));
    if let Some(name) = organizer_name.as_deref().map(ics_atom) {
        if !name.is_empty() {
            organizer.add_parameter("CN", &name);
        }
    }
    event.append_property(organizer.done());

    if let Some(email) = notice
        .customer_email
        .as_deref()
        .and_then(|e| e.trim().parse::<Mailbox>().ok())
    {
        let mut attendee = Property::new("ATTENDEE", format!("mailto:{}", email.email));
        attendee
            .add_parameter("ROLE", "REQ-PARTICIPANT")
            .add_parameter("PARTSTAT", "NEEDS-ACTION")
            .add_parameter("RSVP", "FALSE");
        let name = notice
            .customer_name
            .as_deref()
            .or(email.name.as_deref())
            .map(ics_atom);
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            attendee.add_parameter("CN", &name);
        }
        event.append_multi_property(attendee.done());
    }

    if !cancelled {
        event.alarm(Alarm::display(&title, (-ALARM_BEFORE, Related::Start)));
    }

    let mut calendar = Calendar::new();
    // Calendar::new() brings a PRODID of its own; the calendar properties
    // are set whole so there is exactly one of each.
    calendar.properties = vec![
        Property::new("VERSION", "2.0"),
        Property::new("PRODID", PRODID),
        Property::new("CALSCALE", "GREGORIAN"),
        Property::new("METHOD", method),
    ];
    calendar.push(event.done());
    Some(without_alarm_stamps(&calendar.done().to_string()))
}

/// icalendar writes a DTSTAMP and a random UID into every component it
/// renders, VALARM included; RFC 5545 §3.6.6 allows neither there (and a
/// fresh UID per notice would make clients keep each update's alarm).
fn without_alarm_stamps(ics: &str) -> String {
    let mut out = String::with_capacity(ics.len());
    let mut in_alarm = false;
    let mut dropping = false;
    for line in ics.split_inclusive("\r\n") {
        if line.starts_with(' ') || line.starts_with('\t') {
            // A folded continuation belongs to the line before it.
            if !dropping {
                out.push_str(line);
            }
            continue;
        }
        match line.trim_end() {
            "BEGIN:VALARM" => in_alarm = true,
            "END:VALARM" => in_alarm = false,
            _ => {}
        }
        dropping = in_alarm && (line.starts_with("DTSTAMP") || line.starts_with("UID"));
        if !dropping {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn notice(kind: NoticeKind, sequence: u32) -> AppointmentNotice {
        AppointmentNotice {
            kind,
            service_id: "svc-42".into(),
            title: "Video appointment".into(),
            start: Utc.with_ymd_and_hms(2026, 11, 23, 14, 0, 0).unwrap(),
            end: Utc.with_ymd_and_hms(2026, 11, 23, 14, 15, 0).unwrap(),
            timezone: chrono_tz::America::New_York,
            sequence,
            join_url: Some("https://meet.example.com/j/abc".into()),
            manage_url: None,
            customer_name: Some("Bob Markel".into()),
            customer_email: Some("bob@example.com".into()),
            agent_emails: vec!["a1@example.com".into()],
            sms: None,
        }
    }

    const ORGANIZER: &str = "callbackd <noreply@example.com>";

    /// Content lines with folding undone (RFC 5545 §3.1).
    fn unfolded(ics: &str) -> Vec<String> {
        ics.replace("\r\n ", "")
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn line<'a>(lines: &'a [String], key: &str) -> Vec<&'a str> {
        lines
            .iter()
            .filter(|l| l.starts_with(&format!("{key}:")) || l.starts_with(&format!("{key};")))
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn booked_invite_has_the_rfc_5545_fields() {
        let ics = ics(&notice(NoticeKind::Booked, 0), ORGANIZER).unwrap();
        let lines = unfolded(&ics);
        assert_eq!(lines.first().unwrap(), "BEGIN:VCALENDAR");
        assert_eq!(lines.last().unwrap(), "END:VCALENDAR");
        assert_eq!(line(&lines, "VERSION"), ["VERSION:2.0"]);
        assert_eq!(line(&lines, "PRODID"), [format!("PRODID:{PRODID}")]);
        assert_eq!(line(&lines, "METHOD"), ["METHOD:REQUEST"]);
        assert_eq!(
            line(&lines, "BEGIN"),
            ["BEGIN:VCALENDAR", "BEGIN:VEVENT", "BEGIN:VALARM"]
        );
        assert_eq!(line(&lines, "UID"), ["UID:svc-42@callbackd"]);
        assert_eq!(line(&lines, "SEQUENCE"), ["SEQUENCE:0"]);
        assert_eq!(line(&lines, "DTSTART"), ["DTSTART:20261123T140000Z"]);
        assert_eq!(line(&lines, "DTEND"), ["DTEND:20261123T141500Z"]);
        let stamp = line(&lines, "DTSTAMP");
        assert_eq!(stamp.len(), 1, "{ics}");
        assert!(stamp[0].len() == "DTSTAMP:20261123T140000Z".len() && stamp[0].ends_with('Z'));
        assert_eq!(line(&lines, "SUMMARY"), ["SUMMARY:Video appointment"]);
        assert_eq!(line(&lines, "STATUS"), ["STATUS:CONFIRMED"]);
        assert_eq!(line(&lines, "URL"), ["URL:https://meet.example.com/j/abc"]);
        assert_eq!(
            line(&lines, "LOCATION"),
            ["LOCATION:https://meet.example.com/j/abc"]
        );
        let description = line(&lines, "DESCRIPTION");
        assert!(
            description[0].contains("https://meet.example.com/j/abc"),
            "{description:?}"
        );
        assert_eq!(
            line(&lines, "ORGANIZER"),
            ["ORGANIZER;CN=callbackd:mailto:noreply@example.com"]
        );
        let attendee = line(&lines, "ATTENDEE");
        assert_eq!(attendee.len(), 1);
        assert!(
            attendee[0].ends_with(":mailto:bob@example.com"),
            "{attendee:?}"
        );
        assert!(attendee[0].contains("CN=Bob Markel"), "{attendee:?}");
        // The alarm's trigger is 15 minutes before the start.
        assert_eq!(line(&lines, "TRIGGER"), ["TRIGGER;RELATED=START:-PT900S"]);
        // Only the event has a DTSTAMP and UID; the alarm has neither.
        let alarm = lines.iter().skip_while(|l| *l != "BEGIN:VALARM");
        let alarm: Vec<&String> = alarm.take_while(|l| *l != "END:VALARM").collect();
        assert!(
            alarm.iter().any(|l| l.starts_with("ACTION:DISPLAY")),
            "{alarm:?}"
        );
        assert!(
            alarm
                .iter()
                .all(|l| !l.starts_with("DTSTAMP") && !l.starts_with("UID")),
            "{alarm:?}"
        );
    }

    #[test]
    fn every_line_ends_in_crlf() {
        let ics = ics(&notice(NoticeKind::Booked, 0), ORGANIZER).unwrap();
        assert!(ics.ends_with("\r\n"));
        assert_eq!(
            ics.matches('\n').count(),
            ics.matches("\r\n").count(),
            "a bare LF in {ics:?}"
        );
        assert_eq!(ics.matches('\r').count(), ics.matches("\r\n").count());
    }

    #[test]
    fn long_join_url_is_folded_at_75_octets() {
        let mut n = notice(NoticeKind::Booked, 0);
        let url = format!(
            "https://meet.example.com/j/{}?pwd={}",
            "x".repeat(120),
            "é".repeat(40)
        );
        n.join_url = Some(url.clone());
        n.title = "Vidéo appointment with a rather long title — ünïcödé — that folds".into();
        let ics = ics(&n, ORGANIZER).unwrap();
        for raw in ics.split("\r\n") {
            assert!(raw.len() <= 75, "{} octets: {raw:?}", raw.len());
        }
        assert!(ics.contains("\r\n "), "nothing folded: {ics}");
        let lines = unfolded(&ics);
        assert_eq!(line(&lines, "URL"), [format!("URL:{url}")]);
        assert_eq!(line(&lines, "SUMMARY"), [format!("SUMMARY:{}", n.title)]);
    }

    #[test]
    fn uid_is_stable_and_sequence_follows_the_notice() {
        let booked = unfolded(&ics(&notice(NoticeKind::Booked, 0), ORGANIZER).unwrap());
        let moved = NoticeKind::Rescheduled {
            previous_start: Utc.with_ymd_and_hms(2026, 11, 22, 14, 0, 0).unwrap(),
        };
        let moved = unfolded(&ics(&notice(moved, 1), ORGANIZER).unwrap());
        assert_eq!(line(&booked, "UID"), line(&moved, "UID"));
        assert_eq!(line(&moved, "SEQUENCE"), ["SEQUENCE:1"]);
        assert_eq!(line(&moved, "METHOD"), ["METHOD:REQUEST"]);
    }

    #[test]
    fn cancel_form() {
        let ics = ics(&notice(NoticeKind::Cancelled, 2), ORGANIZER).unwrap();
        let lines = unfolded(&ics);
        assert_eq!(line(&lines, "METHOD"), ["METHOD:CANCEL"]);
        assert_eq!(line(&lines, "STATUS"), ["STATUS:CANCELLED"]);
        assert_eq!(line(&lines, "SEQUENCE"), ["SEQUENCE:2"]);
        assert_eq!(line(&lines, "UID"), ["UID:svc-42@callbackd"]);
        // The attendee stays so clients know whose copy to remove; no alarm.
        assert_eq!(line(&lines, "ATTENDEE").len(), 1);
        assert!(line(&lines, "BEGIN:VALARM").is_empty() && !ics.contains("VALARM"));
    }

    #[test]
    fn reminder_has_no_invite() {
        assert!(ics(&notice(NoticeKind::Reminder, 0), ORGANIZER).is_none());
    }

    #[test]
    fn hostile_text_cannot_add_lines() {
        let mut n = notice(NoticeKind::Booked, 0);
        n.title = "Call\r\nATTENDEE:mailto:evil@example.com".into();
        n.customer_name = Some("Bob\r\n\"Evil\"; X".into());
        n.join_url = Some("https://x.example/\r\nORGANIZER:mailto:evil@example.com".into());
        let ics = ics(&n, ORGANIZER).unwrap();
        let lines = unfolded(&ics);
        assert_eq!(line(&lines, "ATTENDEE").len(), 1, "{ics}");
        assert_eq!(line(&lines, "ORGANIZER").len(), 1, "{ics}");
        assert_eq!(ics.matches('\r').count(), ics.matches("\r\n").count());
    }

    #[test]
    fn no_customer_email_means_no_attendee_and_no_url() {
        let mut n = notice(NoticeKind::Booked, 0);
        n.customer_email = None;
        n.join_url = None;
        let lines = unfolded(&ics(&n, "noreply@example.com").unwrap());
        assert!(line(&lines, "ATTENDEE").is_empty());
        assert!(line(&lines, "URL").is_empty() && line(&lines, "LOCATION").is_empty());
        assert_eq!(
            line(&lines, "ORGANIZER"),
            ["ORGANIZER:mailto:noreply@example.com"]
        );
    }

    #[test]
    fn local_times_are_shown_in_the_notice_zone() {
        let n = notice(NoticeKind::Booked, 0);
        assert_eq!(
            local_span(n.start, n.end, n.timezone),
            "Mon 23 Nov 2026, 09:00–09:15 (America/New_York)"
        );
        assert_eq!(customer_subject(&n), "Your Video appointment is booked");
        let r = notice(NoticeKind::Reminder, 0);
        assert_eq!(
            customer_subject(&r),
            "Reminder: Video appointment at Mon 23 Nov 2026, 09:00 (America/New_York)"
        );
    }

    #[tokio::test]
    async fn smtp_urls() {
        assert_eq!(
            plain_smtp_alias("smtp://127.0.0.1:2525?tls=none"),
            "smtp://127.0.0.1:2525"
        );
        assert_eq!(
            plain_smtp_alias("smtp://h:587?tls=required"),
            "smtp://h:587?tls=required"
        );
        assert!(Notifier::new(
            Some(MailConfig {
                smtp_url: "smtp://127.0.0.1:2525?tls=none".into(),
                from: ORGANIZER.into()
            }),
            Arc::new(push::outbound::NoHttp),
        )
        .is_ok());
        assert!(Notifier::new(
            Some(MailConfig {
                smtp_url: "smtps://user:p%40ss@smtp.example.com".into(),
                from: ORGANIZER.into()
            }),
            Arc::new(push::outbound::NoHttp),
        )
        .is_ok());
        let bad_url = Notifier::new(
            Some(MailConfig {
                smtp_url: "ftp://user:secret@host".into(),
                from: ORGANIZER.into(),
            }),
            Arc::new(push::outbound::NoHttp),
        )
        .err()
        .unwrap();
        assert!(format!("{bad_url:#}").contains("invalid SMTP URL"));
        assert!(!format!("{bad_url:#}").contains("secret"));
        let bad_from = Notifier::new(
            Some(MailConfig {
                smtp_url: "smtp://localhost".into(),
                from: "not an address".into(),
            }),
            Arc::new(push::outbound::NoHttp),
        )
        .err()
        .unwrap();
        assert!(format!("{bad_from}").contains("invalid mail from address"));
    }
}
