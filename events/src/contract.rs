//! The input contract: the limits of every text a command accepts, declared once.
//!
//! What the command API accepts, every projection must store (DESIGN.md guarantee 10).
//! Each limit is chosen so that every store takes the value: PostgreSQL's column widths
//! and its B-tree limit of about 2,700 bytes per index row, Elasticsearch's completion
//! field (which refuses control characters) and its 32,766-byte keyword terms, MongoDB's
//! 16 MiB documents, and the broker's message size. `COLUMNS` names the PostgreSQL
//! column each limited field lands in; a test reads the widths from
//! `information_schema` and compares, so a migration and this contract cannot drift.

/// The limits of one kind of text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Text {
    /// At most this many characters (Unicode scalar values).
    pub max_chars: usize,
    /// At most this many bytes of UTF-8, where an index holds the value whole.
    pub max_bytes: Option<usize>,
    /// A name or a title: no line breaks or tabs either.
    pub single_line: bool,
}

impl Text {
    pub const fn line(max_chars: usize) -> Self {
        Self { max_chars, max_bytes: None, single_line: true }
    }

    const fn prose(max_chars: usize) -> Self {
        Self { max_chars, max_bytes: None, single_line: false }
    }

    /// What is wrong with `value` for this limit, as a message for its field.
    pub fn problem(&self, value: &str) -> Option<String> {
        if value.trim().is_empty() {
            return Some("must not be blank".into());
        }
        let chars = value.chars().count();
        if chars > self.max_chars {
            return Some(format!("must be at most {} characters (got {chars})", self.max_chars));
        }
        if let Some(max) = self.max_bytes.filter(|max| value.len() > *max) {
            return Some(format!("must be at most {max} bytes of UTF-8 (got {})", value.len()));
        }
        if let Some(c) = value.chars().find(|c| self.refuses(*c)) {
            return Some(format!(
                "must not contain control characters (found U+{:04X}){}",
                u32::from(c),
                if self.single_line { "; it is a single line" } else { "" }
            ));
        }
        None
    }

    /// Control characters: no store keeps a NUL, Elasticsearch's completion field
    /// refuses several others, and none belongs in case-management text. Prose keeps
    /// tabs and line breaks.
    fn refuses(&self, c: char) -> bool {
        c.is_control() && (self.single_line || !matches!(c, '\t' | '\n' | '\r'))
    }
}

/// Names of things: users' first and last names, teams, case types, channels, workflows,
/// templates, file names, a field's display name.
pub const NAME: Text = Text::line(255);
/// A tenant's name.
pub const TENANT_NAME: Text = Text::line(200);
/// A case's or a task's title.
pub const TITLE: Text = Text::line(255);
/// One tag of a case or a note.
pub const TAG: Text = Text::line(64);
/// A workflow stage's name.
pub const STAGE_NAME: Text = Text::line(100);
/// A MIME type (`application/pdf`).
pub const MIME_TYPE: Text = Text::line(100);
/// Where a document is stored.
pub const STORAGE_PATH: Text = Text::line(1024);
/// An interaction's id in the channel it came from.
pub const EXTERNAL_ID: Text = Text::line(255);
/// A message template's subject line.
pub const SUBJECT: Text = Text::line(500);
/// Why a tenant was suspended.
pub const REASON: Text = Text::prose(500);
/// What a workflow's `notify` action tells.
pub const NOTICE: Text = Text::prose(500);
/// A case's description.
pub const DESCRIPTION: Text = Text::prose(20_000);
/// A team's description.
pub const TEAM_DESCRIPTION: Text = Text::prose(2000);
/// A note's content.
pub const NOTE: Text = Text::prose(50_000);
/// An interaction's content.
pub const INTERACTION_CONTENT: Text = Text::prose(100_000);
/// A message template's body.
pub const TEMPLATE: Text = Text::prose(100_000);
/// The value of a text custom field. PostgreSQL indexes `custom_fields->>'customer_id'`
/// whole in a B-tree (at most about 2,700 bytes a row), so the bytes are bounded too.
pub const CUSTOM_TEXT: Text = Text { max_chars: 1000, max_bytes: Some(2000), single_line: false };

/// Tags on one case.
pub const MAX_TAGS: usize = 50;
/// Tags on one note.
pub const MAX_NOTE_TAGS: usize = 20;
/// Custom fields on one case, and fields in one case type's form.
pub const MAX_CUSTOM_FIELDS: usize = 100;
/// Options of one select field.
pub const MAX_OPTIONS: usize = 200;
/// A form field's pattern (a regular expression).
pub const MAX_PATTERN: usize = 1000;

/// How far back an interaction may be dated: it lands in a monthly partition and index,
/// so the past it may reach bounds how many of them one tenant's callers can create.
pub const MAX_BACKDATED_DAYS: i64 = 10 * 366;

/// The longest SLA target, in minutes (366 days): due times must stay dates every store
/// takes.
pub const MAX_SLA_MINUTES: u32 = 366 * 24 * 60;

/// Usernames: 3-64 characters of a-z, 0-9, '.', '_' and '-'.
pub const USERNAME_MAX: usize = 64;
/// Email addresses: at most 255 bytes.
pub const EMAIL_MAX: usize = 255;
/// Tenant slugs: 3-63 characters of a-z, 0-9 and '-'.
pub const SLUG_MAX: usize = 63;

/// A PostgreSQL read-model column and the most characters the contract lets into it.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub table: &'static str,
    pub column: &'static str,
    pub max_chars: usize,
}

const fn column(table: &'static str, column: &'static str, max_chars: usize) -> Column {
    Column { table, column, max_chars }
}

/// Every bounded-width (`VARCHAR(n)`) column of the tenant tables and `public.tenants`,
/// with the most characters a command can put there: from a `Text` limit above, a
/// username or email limit, or the longest value of an enumeration or generated id.
pub const COLUMNS: &[Column] = &[
    column("tenants", "name", TENANT_NAME.max_chars),
    column("tenants", "slug", SLUG_MAX),
    column("tenants", "status", "suspended".len()),
    column("users", "username", USERNAME_MAX),
    column("users", "email", EMAIL_MAX),
    column("users", "first_name", NAME.max_chars),
    column("users", "last_name", NAME.max_chars),
    column("users", "role", "supervisor".len()),
    column("users", "status", "inactive".len()),
    column("teams", "name", NAME.max_chars),
    column("team_members", "role", "member".len()),
    column("case_types", "name", NAME.max_chars),
    column("cases", "case_number", CASE_NUMBER_MAX),
    column("cases", "title", TITLE.max_chars),
    column("cases", "status", "in_progress".len()),
    column("cases", "priority", "urgent".len()),
    column("cases", "case_type_name", NAME.max_chars),
    column("cases", "assigned_to_username", USERNAME_MAX),
    column("channels", "name", NAME.max_chars),
    column("channels", "type", CHANNEL_TYPE_MAX),
    column("tasks", "title", TITLE.max_chars),
    column("tasks", "status", "in_progress".len()),
    column("tasks", "priority", "urgent".len()),
    column("documents", "filename", NAME.max_chars),
    column("documents", "mime_type", MIME_TYPE.max_chars),
    column("documents", "storage_path", STORAGE_PATH.max_chars),
    column("workflows", "name", NAME.max_chars),
    column("interactions", "direction", "outbound".len()),
    column("interactions", "external_id", EXTERNAL_ID.max_chars),
];

/// `CASE-` and a number of at most 19 digits.
pub const CASE_NUMBER_MAX: usize = 24;
/// The longest channel type (`crate::channel::ChannelType`).
pub const CHANNEL_TYPE_MAX: usize = "whatsapp".len();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_counts_characters_and_bytes() {
        let emoji = "😀".repeat(255);
        assert_eq!(NAME.problem(&emoji), None, "255 four-byte characters are 255 characters");
        assert!(NAME.problem(&"😀".repeat(256)).is_some());
        let wide = "€".repeat(700); // 2,100 bytes
        assert!(CUSTOM_TEXT.problem(&wide).is_some_and(|p| p.contains("bytes")));
        assert_eq!(CUSTOM_TEXT.problem(&"€".repeat(600)), None);
    }

    #[test]
    fn control_characters_are_refused_and_prose_keeps_its_line_breaks() {
        for c in ['\u{0}', '\u{1f}', '\u{1e}', '\u{7f}', '\u{85}'] {
            assert!(TITLE.problem(&format!("a{c}b")).is_some(), "{c:?} in a title");
            assert!(DESCRIPTION.problem(&format!("a{c}b")).is_some(), "{c:?} in prose");
        }
        assert!(TITLE.problem("two\nlines").is_some());
        assert_eq!(DESCRIPTION.problem("two\r\nlines\tand a tab"), None);
        // Zero-width, combining, right-to-left and emoji are text, not control.
        assert_eq!(TITLE.problem("e\u{301}\u{200b}\u{202e}שלום 👩‍👩‍👧"), None);
    }

    #[test]
    fn blank_is_refused() {
        assert!(NAME.problem(" \u{3000} ").is_some());
    }
}
