//! Skill expressions: which agents may take a service, in the spirit of
//! Genesys URS skill expressions (`English >= 5 & (Sales | Billing > 2)`).
//!
//! ```text
//! expr    := or
//! or      := and ( ("|" | "||" | "or") and )*
//! and     := unary ( ("&" | "&&" | "and") unary )*
//! unary   := ("!" | "not") unary | "(" expr ")" | compare
//! compare := SKILL [ op NUMBER ]
//! op      := "=" | "==" | "!=" | ">" | ">=" | "<" | "<="
//! SKILL   := [A-Za-z_][A-Za-z0-9_.-]*   but not and/or/not (keywords in any case)
//! NUMBER  := decimal u32
//! ```
//!
//! Whitespace may appear between any two tokens. A bare `SKILL` holds when the
//! agent has the skill at a level above 0; a comparison treats a skill the agent
//! lacks as level 0, so `Spanish < 3` and `Spanish = 0` hold for an agent
//! without Spanish. Skill names are case-sensitive, and `and` binds tighter
//! than `or`; `!a > 3` means `!(a > 3)`.
//!
//! Expressions come from admin-written scenario files, so input is capped at
//! 1024 characters and 64 levels of nesting, and every failure is a
//! [`SkillExprError`] whose `position` counts characters (not bytes) from 0.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest accepted input, in characters.
const MAX_LEN: usize = 1024;
/// Deepest accepted nesting of `(` and `not`; recursion in the parser,
/// evaluator and drop glue follows it, so it also bounds stack use.
const MAX_DEPTH: usize = 64;
/// How much of the rest of the input a "trailing input" error quotes.
const MAX_QUOTE: usize = 32;

/// A parsed skill expression, e.g. `English >= 5 & !Trainee`.
#[derive(Clone)]
pub struct SkillExpr {
    source: String,
    root: Node,
}

/// Why a skill expression was rejected, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("skill expression `{source_text}`: {message} at character {position}")]
pub struct SkillExprError {
    /// The text as given (untrimmed, so that `position` indexes into it).
    pub source_text: String,
    pub message: String,
    /// 0-based character (not byte) offset into `source_text`.
    pub position: usize,
}

impl SkillExpr {
    pub fn parse(text: &str) -> Result<SkillExpr, SkillExprError> {
        let fail = |message: String, position: usize| SkillExprError {
            source_text: text.to_owned(),
            message,
            position,
        };
        // Checked before collecting anything so that a huge input costs no
        // more than MAX_LEN characters of work, and its error stays small.
        if text.chars().nth(MAX_LEN).is_some() {
            let head: String = text.chars().take(MAX_LEN).collect();
            return Err(SkillExprError {
                source_text: format!("{head}…"),
                message: format!("expression is longer than {MAX_LEN} characters"),
                position: MAX_LEN,
            });
        }
        let source = text.trim();
        if source.is_empty() {
            return Err(fail(
                "empty expression: expected a skill name, `not` or `(`".into(),
                0,
            ));
        }
        let chars: Vec<char> = text.chars().collect();
        let tokens = lex(&chars).map_err(|(message, position)| fail(message, position))?;
        let mut parser = Parser {
            chars: &chars,
            tokens: &tokens,
            next: 0,
            depth: 0,
        };
        let root = parser
            .parse_expr()
            .map_err(|(message, position)| fail(message, position))?;
        Ok(SkillExpr {
            source: source.to_owned(),
            root,
        })
    }

    /// Whether an agent with these skills (name -> level) satisfies the expression.
    pub fn matches(&self, skills: &BTreeMap<String, u32>) -> bool {
        self.root.eval(skills)
    }

    /// The original text, trimmed.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl FromStr for SkillExpr {
    type Err = SkillExprError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        SkillExpr::parse(text)
    }
}

impl fmt::Display for SkillExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

// The AST would only repeat the source in noisier form inside scenario dumps.
impl fmt::Debug for SkillExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SkillExpr").field(&self.source).finish()
    }
}

// The AST is a function of the source text, so the text alone decides equality.
impl PartialEq for SkillExpr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for SkillExpr {}

impl Hash for SkillExpr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.source.hash(state);
    }
}

impl Serialize for SkillExpr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for SkillExpr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        SkillExpr::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    fn holds(self, level: u32, value: u32) -> bool {
        match self {
            CmpOp::Eq => level == value,
            CmpOp::Ne => level != value,
            CmpOp::Gt => level > value,
            CmpOp::Ge => level >= value,
            CmpOp::Lt => level < value,
            CmpOp::Le => level <= value,
        }
    }
}

// `and`/`or` keep their operands in a flat list rather than a binary tree so
// that a long chain like `a | b | c | ...` does not deepen the recursion.
#[derive(Debug, Clone)]
enum Node {
    Has(String),
    Cmp {
        skill: String,
        op: CmpOp,
        value: u32,
    },
    Not(Box<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
}

impl Node {
    fn eval(&self, skills: &BTreeMap<String, u32>) -> bool {
        match self {
            Node::Has(skill) => skills.get(skill).is_some_and(|&level| level > 0),
            Node::Cmp { skill, op, value } => {
                op.holds(skills.get(skill).copied().unwrap_or(0), *value)
            }
            Node::Not(inner) => !inner.eval(skills),
            Node::And(terms) => terms.iter().all(|t| t.eval(skills)),
            Node::Or(terms) => terms.iter().any(|t| t.eval(skills)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Skill,
    // Any word starting with a digit, so that `3abc` or `5.5` is reported
    // whole instead of as a number followed by puzzling trailing input.
    Number,
    And,
    Or,
    Not,
    LParen,
    RParen,
    Cmp(CmpOp),
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    /// Character offset of the first character.
    pos: usize,
    /// Length in characters.
    len: usize,
}

/// An error message and the character position it refers to.
type Failure = (String, usize);

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Shows control and other invisible characters escaped, but leaves quotes and
/// backslashes alone since the message is not a string literal.
fn printable(c: char) -> String {
    match c {
        '"' | '\'' | '\\' => c.to_string(),
        _ => c.escape_debug().to_string(),
    }
}

fn lex(chars: &[char]) -> Result<Vec<Token>, Failure> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let start = i;
        let doubled = |second: char| chars.get(start + 1) == Some(&second);
        let (kind, len) = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => (Kind::LParen, 1),
            ')' => (Kind::RParen, 1),
            '&' => (Kind::And, if doubled('&') { 2 } else { 1 }),
            '|' => (Kind::Or, if doubled('|') { 2 } else { 1 }),
            '!' if doubled('=') => (Kind::Cmp(CmpOp::Ne), 2),
            '!' => (Kind::Not, 1),
            '=' => (Kind::Cmp(CmpOp::Eq), if doubled('=') { 2 } else { 1 }),
            '>' if doubled('=') => (Kind::Cmp(CmpOp::Ge), 2),
            '>' => (Kind::Cmp(CmpOp::Gt), 1),
            '<' if doubled('=') => (Kind::Cmp(CmpOp::Le), 2),
            '<' => (Kind::Cmp(CmpOp::Lt), 1),
            c if c.is_ascii_alphanumeric() || c == '_' => {
                let len = chars[start..]
                    .iter()
                    .take_while(|&&c| is_word_char(c))
                    .count();
                let word: String = chars[start..start + len].iter().collect();
                let kind = if c.is_ascii_digit() {
                    Kind::Number
                } else if word.eq_ignore_ascii_case("and") {
                    Kind::And
                } else if word.eq_ignore_ascii_case("or") {
                    Kind::Or
                } else if word.eq_ignore_ascii_case("not") {
                    Kind::Not
                } else {
                    Kind::Skill
                };
                (kind, len)
            }
            other => {
                return Err((
                    format!(
                        "unexpected character `{}`: expected a skill name (ASCII letters, \
                         digits, `_`, `.`, `-`), a number, an operator or a parenthesis",
                        printable(other)
                    ),
                    start,
                ))
            }
        };
        tokens.push(Token {
            kind,
            pos: start,
            len,
        });
        i += len;
    }
    Ok(tokens)
}

struct Parser<'a> {
    chars: &'a [char],
    tokens: &'a [Token],
    next: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a Token> {
        self.tokens.get(self.next)
    }

    fn text(&self, token: &Token) -> String {
        self.chars[token.pos..token.pos + token.len]
            .iter()
            .collect()
    }

    /// Where "end of expression" errors point: just past the last token.
    fn end(&self) -> usize {
        self.tokens.last().map_or(0, |t| t.pos + t.len)
    }

    /// How the next token reads in "found ..." messages, and where it is.
    fn found(&self) -> (String, usize) {
        match self.peek() {
            None => ("end of expression".into(), self.end()),
            Some(t)
                if matches!(t.kind, Kind::And | Kind::Or | Kind::Not)
                    && self.chars[t.pos].is_ascii_alphabetic() =>
            {
                (format!("keyword `{}`", self.text(t)), t.pos)
            }
            Some(t) => (format!("`{}`", self.text(t)), t.pos),
        }
    }

    fn expected(&self, what: &str) -> Failure {
        let (found, pos) = self.found();
        (format!("expected {what}, found {found}"), pos)
    }

    fn parse_expr(&mut self) -> Result<Node, Failure> {
        let root = self.parse_or()?;
        match self.peek() {
            None => Ok(root),
            Some(t) if t.kind == Kind::RParen => {
                Err(("unexpected `)` with no matching `(`".into(), t.pos))
            }
            Some(t) => {
                let rest = &self.chars[t.pos..self.end()];
                let mut quoted: String = rest.iter().take(MAX_QUOTE).collect();
                if rest.len() > MAX_QUOTE {
                    quoted.push('…');
                }
                Err((
                    format!(
                        "trailing input `{quoted}`: expected `and`, `or` or the end of the \
                         expression"
                    ),
                    t.pos,
                ))
            }
        }
    }

    fn parse_or(&mut self) -> Result<Node, Failure> {
        let mut terms = vec![self.parse_and()?];
        while self.peek().is_some_and(|t| t.kind == Kind::Or) {
            self.next += 1;
            terms.push(self.parse_and()?);
        }
        Ok(if terms.len() == 1 {
            terms.swap_remove(0)
        } else {
            Node::Or(terms)
        })
    }

    fn parse_and(&mut self) -> Result<Node, Failure> {
        let mut terms = vec![self.parse_unary()?];
        while self.peek().is_some_and(|t| t.kind == Kind::And) {
            self.next += 1;
            terms.push(self.parse_unary()?);
        }
        Ok(if terms.len() == 1 {
            terms.swap_remove(0)
        } else {
            Node::And(terms)
        })
    }

    fn enter(&mut self, pos: usize) -> Result<(), Failure> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err((
                format!("expression is nested deeper than {MAX_DEPTH} levels"),
                pos,
            ));
        }
        Ok(())
    }

    fn parse_unary(&mut self) -> Result<Node, Failure> {
        let Some(token) = self.peek() else {
            return Err(self.expected_operand());
        };
        match token.kind {
            Kind::Not => {
                self.enter(token.pos)?;
                self.next += 1;
                let inner = self.parse_unary()?;
                self.depth -= 1;
                Ok(Node::Not(Box::new(inner)))
            }
            Kind::LParen => {
                self.enter(token.pos)?;
                self.next += 1;
                let inner = self.parse_or()?;
                match self.peek() {
                    Some(t) if t.kind == Kind::RParen => self.next += 1,
                    Some(_) => return Err(self.expected("`and`, `or` or `)`")),
                    None => {
                        return Err((
                            "unclosed `(`: expected `)` before the end of the expression".into(),
                            token.pos,
                        ))
                    }
                }
                self.depth -= 1;
                Ok(inner)
            }
            Kind::Skill => {
                self.next += 1;
                let skill = self.text(token);
                match self.peek() {
                    Some(
                        op_token @ Token {
                            kind: Kind::Cmp(op),
                            ..
                        },
                    ) => {
                        self.next += 1;
                        let value = self.parse_number(op_token)?;
                        Ok(Node::Cmp {
                            skill,
                            op: *op,
                            value,
                        })
                    }
                    _ => Ok(Node::Has(skill)),
                }
            }
            _ => Err(self.expected_operand()),
        }
    }

    fn parse_number(&mut self, op_token: &Token) -> Result<u32, Failure> {
        let op = self.text(op_token);
        let Some(token) = self.peek().filter(|t| t.kind == Kind::Number) else {
            return Err(self.expected(&format!("a number after `{op}`")));
        };
        let digits = self.text(token);
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.expected(&format!("a number after `{op}`")));
        }
        // All digits, so the only way to fail is overflow.
        let value = digits
            .parse::<u32>()
            .map_err(|_| self.expected(&format!("a number from 0 to {} after `{op}`", u32::MAX)))?;
        self.next += 1;
        Ok(value)
    }

    fn expected_operand(&self) -> Failure {
        let what = "a skill name, `not` or `(`";
        match self.next.checked_sub(1).and_then(|i| self.tokens.get(i)) {
            Some(prev) => self.expected(&format!("{what} after `{}`", self.text(prev))),
            None => self.expected(what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skills(list: &[(&str, u32)]) -> BTreeMap<String, u32> {
        list.iter()
            .map(|&(name, level)| (name.to_owned(), level))
            .collect()
    }

    fn check(expr: &str, agent: &[(&str, u32)], expected: bool) {
        let parsed = SkillExpr::parse(expr).unwrap_or_else(|e| panic!("{expr:?}: {e}"));
        assert_eq!(
            parsed.matches(&skills(agent)),
            expected,
            "{expr:?} against {agent:?}"
        );
    }

    fn check_error(expr: &str, message: &str, position: usize) {
        let err = SkillExpr::parse(expr).expect_err(expr);
        assert!(
            err.message.contains(message),
            "{expr:?}: message {:?} lacks {message:?}",
            err.message
        );
        assert_eq!(err.position, position, "{expr:?}: {err}");
        assert_eq!(err.source_text, expr);
    }

    /// An agent's skills as written in the tables.
    type Agent = &'static [(&'static str, u32)];

    const ENGLISH_5: Agent = &[("English", 5)];
    const SALES_AGENT: Agent = &[("English", 7), ("Sales", 3), ("Billing", 0)];
    const NOBODY: Agent = &[];

    #[test]
    fn evaluates() {
        let cases: &[(&str, Agent, bool)] = &[
            // Bare skills mean "level above 0".
            ("English", ENGLISH_5, true),
            ("English", NOBODY, false),
            ("Billing", SALES_AGENT, false),
            ("Sales", SALES_AGENT, true),
            // Names are case-sensitive.
            ("english", ENGLISH_5, false),
            ("ENGLISH", ENGLISH_5, false),
            // Every comparison operator, at and around the boundary.
            ("English = 5", ENGLISH_5, true),
            ("English == 5", ENGLISH_5, true),
            ("English = 4", ENGLISH_5, false),
            ("English != 5", ENGLISH_5, false),
            ("English != 4", ENGLISH_5, true),
            ("English > 4", ENGLISH_5, true),
            ("English > 5", ENGLISH_5, false),
            ("English >= 5", ENGLISH_5, true),
            ("English >= 6", ENGLISH_5, false),
            ("English < 6", ENGLISH_5, true),
            ("English < 5", ENGLISH_5, false),
            ("English <= 5", ENGLISH_5, true),
            ("English <= 4", ENGLISH_5, false),
            ("English>=5", ENGLISH_5, true),
            ("English >= 005", ENGLISH_5, true),
            ("English <= 4294967295", ENGLISH_5, true),
            ("English = 4294967295", &[("English", u32::MAX)], true),
            ("English", &[("English", u32::MAX)], true),
            // Missing skills compare as level 0.
            ("Spanish < 3", ENGLISH_5, true),
            ("Spanish = 0", ENGLISH_5, true),
            ("Spanish == 0", NOBODY, true),
            ("Spanish <= 0", NOBODY, true),
            ("Spanish >= 0", NOBODY, true),
            ("Spanish > 0", NOBODY, false),
            ("Spanish != 0", NOBODY, false),
            ("Spanish >= 1", NOBODY, false),
            ("Billing = 0", SALES_AGENT, true),
            // Negation.
            ("!English", ENGLISH_5, false),
            ("!Spanish", ENGLISH_5, true),
            ("!!English", ENGLISH_5, true),
            ("not English", ENGLISH_5, false),
            ("NOT English", ENGLISH_5, false),
            ("Not not English", ENGLISH_5, true),
            ("! English > 6", ENGLISH_5, true),
            ("!English > 4", ENGLISH_5, false),
            ("!(English > 4)", ENGLISH_5, false),
            ("!Billing", SALES_AGENT, true),
            // Conjunction and disjunction in every spelling.
            ("English & Sales", SALES_AGENT, true),
            ("English && Sales", SALES_AGENT, true),
            ("English and Sales", SALES_AGENT, true),
            ("English AND Sales", SALES_AGENT, true),
            ("English aNd Sales", SALES_AGENT, true),
            ("English & Billing", SALES_AGENT, false),
            ("English and Billing", SALES_AGENT, false),
            ("Billing | Sales", SALES_AGENT, true),
            ("Billing || Sales", SALES_AGENT, true),
            ("Billing or Sales", SALES_AGENT, true),
            ("Billing OR Sales", SALES_AGENT, true),
            ("Billing Or Sales", SALES_AGENT, true),
            ("Billing | Spanish", SALES_AGENT, false),
            ("Billing or Spanish", SALES_AGENT, false),
            ("English&Sales|Billing", SALES_AGENT, true),
            ("a & b & c", &[("a", 1), ("b", 1), ("c", 1)], true),
            ("a & b & c", &[("a", 1), ("b", 1)], false),
            ("a | b | c", &[("c", 1)], true),
            ("a | b | c", NOBODY, false),
            // `and` binds tighter than `or`.
            ("Sales | Spanish & Billing", SALES_AGENT, true),
            ("(Sales | Spanish) & Billing", SALES_AGENT, false),
            ("Spanish & Billing | Sales", SALES_AGENT, true),
            ("Spanish & (Billing | Sales)", SALES_AGENT, false),
            ("a or b and c", &[("a", 1)], true),
            ("a or b and c", &[("b", 1)], false),
            ("(a or b) and c", &[("a", 1)], false),
            ("(a or b) and c", &[("b", 1), ("c", 2)], true),
            // `not` binds tighter than `and`.
            ("!a & b", &[("b", 1)], true),
            ("!a & b", &[("a", 1), ("b", 1)], false),
            ("!(a & b)", &[("a", 1)], true),
            ("not a or b", &[("a", 1)], false),
            ("not (a or b)", &[("b", 1)], false),
            // Parentheses and whitespace.
            ("(English)", ENGLISH_5, true),
            ("((((English >= 5))))", ENGLISH_5, true),
            ("  English\t>=\n5  ", ENGLISH_5, true),
            ("(English>=5)&(Sales>2|Billing>2)", SALES_AGENT, true),
            (
                "English >= 5 & (Sales > 3 | Billing > 2)",
                SALES_AGENT,
                false,
            ),
            // Skill names may contain digits, `_`, `.` and `-`, and may look like keywords.
            ("Sales.L2 > 1", &[("Sales.L2", 2)], true),
            ("_vip", &[("_vip", 1)], true),
            ("skill-1_a.b", &[("skill-1_a.b", 1)], true),
            (
                "android & order & notes",
                &[("android", 1), ("order", 1), ("notes", 1)],
                true,
            ),
            ("ander", &[("ander", 1)], true),
        ];
        for &(expr, agent, expected) in cases {
            check(expr, agent, expected);
        }
    }

    #[test]
    fn rejects_bad_input() {
        let nested_ok = format!("{}a{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        let nested_bad = format!(
            "{}a{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        let nots_bad = format!("{}a", "!".repeat(MAX_DEPTH + 1));
        let mixed_bad = format!("{}a{}", "!(".repeat(33), ")".repeat(33));
        let too_long = format!("a{}", " | a".repeat(300));
        assert!(SkillExpr::parse(&nested_ok).is_ok());
        assert!(SkillExpr::parse(&format!("{}a", "!".repeat(MAX_DEPTH))).is_ok());

        let cases: &[(&str, &str, usize)] = &[
            ("", "empty expression", 0),
            ("   \t\n ", "empty expression", 0),
            (
                "English >=",
                "expected a number after `>=`, found end of expression",
                10,
            ),
            (
                "English >= ",
                "expected a number after `>=`, found end of expression",
                10,
            ),
            (
                "English >= x",
                "expected a number after `>=`, found `x`",
                11,
            ),
            ("English >= -1", "unexpected character `-`", 11),
            (
                "English >= 5.5",
                "expected a number after `>=`, found `5.5`",
                11,
            ),
            (
                "English > 3abc",
                "expected a number after `>`, found `3abc`",
                10,
            ),
            (
                "English = = 3",
                "expected a number after `=`, found `=`",
                10,
            ),
            (
                "English === 3",
                "expected a number after `==`, found `=`",
                10,
            ),
            ("English => 3", "expected a number after `=`, found `>`", 9),
            (
                "English != and",
                "expected a number after `!=`, found keyword `and`",
                11,
            ),
            (
                "English > 4294967296",
                "expected a number from 0 to 4294967295 after `>`",
                10,
            ),
            ("English > 99999999999999999999", "from 0 to 4294967295", 10),
            (")", "expected a skill name, `not` or `(`, found `)`", 0),
            ("English)", "unexpected `)`", 7),
            ("(English))", "unexpected `)`", 9),
            (
                "()",
                "expected a skill name, `not` or `(` after `(`, found `)`",
                1,
            ),
            ("English & )", "after `&`, found `)`", 10),
            ("(English", "unclosed `(`", 0),
            ("((English)", "unclosed `(`", 0),
            ("(a & (b | c)", "unclosed `(`", 0),
            ("a & (b | c", "unclosed `(`", 4),
            ("(a b)", "expected `and`, `or` or `)`, found `b`", 3),
            ("English xyz", "trailing input `xyz`", 8),
            ("a b c", "trailing input `b c`", 2),
            ("a > 3 > 4", "trailing input `> 4`", 6),
            ("a (b)", "trailing input `(b)`", 2),
            ("a ! b", "trailing input `! b`", 2),
            (
                "a &",
                "expected a skill name, `not` or `(` after `&`, found end of expression",
                3,
            ),
            ("a and", "after `and`, found end of expression", 5),
            ("a or", "after `or`, found end of expression", 4),
            ("a | | b", "after `|`, found `|`", 4),
            ("a &&& b", "after `&&`, found `&`", 4),
            ("not", "after `not`, found end of expression", 3),
            ("!", "after `!`, found end of expression", 1),
            (
                "and",
                "expected a skill name, `not` or `(`, found keyword `and`",
                0,
            ),
            ("OR a", "found keyword `OR`", 0),
            ("a & not or b", "after `not`, found keyword `or`", 8),
            ("& a", "expected a skill name, `not` or `(`, found `&`", 0),
            ("5", "expected a skill name, `not` or `(`, found `5`", 0),
            ("3 < English", "found `3`", 0),
            ("> 3", "found `>`", 0),
            ("!= 3", "found `!=`", 0),
            ("Español", "unexpected character `ñ`", 4),
            ("  Español > 1", "unexpected character `ñ`", 6),
            ("日本 > 1", "unexpected character `日`", 0),
            ("a & 🦀", "unexpected character `🦀`", 4),
            ("a\u{0}", "unexpected character `\\0`", 1),
            ("a - b", "unexpected character `-`", 2),
            ("a + b", "unexpected character `+`", 2),
            ("\"a\"", "unexpected character `\"`", 0),
            ("-a", "unexpected character `-`", 0),
            (&nested_bad, "nested deeper than 64 levels", MAX_DEPTH),
            (&nots_bad, "nested deeper than 64 levels", MAX_DEPTH),
            (&mixed_bad, "nested deeper than 64 levels", 64),
            (&too_long, "longer than 1024 characters", 1024),
        ];
        for &(expr, message, position) in cases {
            if expr.chars().count() > MAX_LEN {
                // The echoed text is cut short, so check_error's echo check does not apply.
                let err = SkillExpr::parse(expr).expect_err("too long");
                assert!(err.message.contains(message), "{err}");
                assert_eq!(err.position, position);
                assert!(err.source_text.chars().count() <= MAX_LEN + 1);
            } else {
                check_error(expr, message, position);
            }
        }
    }

    #[test]
    fn length_limit_counts_characters() {
        let exactly = format!("{}{}", "a".repeat(MAX_LEN - 1), "b");
        assert!(SkillExpr::parse(&exactly).is_ok());
        let padded = format!("{:<width$}", "a", width = MAX_LEN);
        assert_eq!(SkillExpr::parse(&padded).unwrap().as_str(), "a");
        // Multi-byte characters must not be counted as several.
        let wide = format!("a{}", "\u{3000}".repeat(MAX_LEN - 1));
        assert_eq!(SkillExpr::parse(&wide).unwrap().as_str(), "a");
        assert!(SkillExpr::parse(&"a".repeat(MAX_LEN + 1)).is_err());
        assert!(SkillExpr::parse(&"(".repeat(1_000_000)).is_err());
    }

    #[test]
    fn error_display() {
        let err = SkillExpr::parse("English >=").unwrap_err();
        assert_eq!(
            err.to_string(),
            "skill expression `English >=`: expected a number after `>=`, \
             found end of expression at character 10"
        );
    }

    #[test]
    fn text_round_trips() {
        let expr = SkillExpr::parse("  English >= 5 & !Trainee \n").unwrap();
        assert_eq!(expr.as_str(), "English >= 5 & !Trainee");
        assert_eq!(expr.to_string(), "English >= 5 & !Trainee");
        assert_eq!(
            format!("{expr:?}"),
            "SkillExpr(\"English >= 5 & !Trainee\")"
        );
        let again: SkillExpr = expr.as_str().parse().unwrap();
        assert_eq!(again, expr);
        assert_ne!(
            SkillExpr::parse("a&b").unwrap(),
            SkillExpr::parse("a & b").unwrap()
        );
        assert!("English >".parse::<SkillExpr>().is_err());
    }

    #[test]
    fn serde_round_trip() {
        let expr: SkillExpr = serde_json::from_str("\"English >= 5\"").unwrap();
        assert_eq!(expr.as_str(), "English >= 5");
        assert!(expr.matches(&skills(ENGLISH_5)));
        assert!(!expr.matches(&skills(&[("English", 4)])));
        assert_eq!(serde_json::to_string(&expr).unwrap(), "\"English >= 5\"");
        let back: SkillExpr = serde_json::from_str(&serde_json::to_string(&expr).unwrap()).unwrap();
        assert_eq!(back, expr);

        let trimmed: SkillExpr = serde_json::from_str("\" a | b \"").unwrap();
        assert_eq!(serde_json::to_string(&trimmed).unwrap(), "\"a | b\"");

        let err = serde_json::from_str::<SkillExpr>("\"English >=\"").unwrap_err();
        let parse_err = SkillExpr::parse("English >=").unwrap_err();
        assert!(err.to_string().contains(&parse_err.to_string()), "{err}");
        assert!(serde_json::from_str::<SkillExpr>("5").is_err());
        assert!(serde_json::from_str::<SkillExpr>("null").is_err());
    }

    /// Tiny LCG so the random tests need no extra crates and are reproducible.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, bound: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 33) as usize) % bound
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    fn agents() -> [BTreeMap<String, u32>; 3] {
        [
            skills(NOBODY),
            skills(&[("a", 1), ("English", 5), ("c", 0)]),
            skills(&[("b", u32::MAX), ("Sales.L2", 4), ("_x", 3), ("c", 7)]),
        ]
    }

    /// Writes a random valid expression with every spelling of every operator,
    /// returning its value for each of `agents()`, worked out independently of
    /// the parser: the text is built as an `or` of `and`s of unary terms, so the
    /// expected value follows the grammar's precedence directly.
    fn random_expr(rng: &mut Lcg, depth: usize, out: &mut String) -> [bool; 3] {
        let mut any = [false; 3];
        for i in 0..=rng.below(3) {
            if i > 0 {
                out.push_str(rng.pick(&[" | ", "||", " or ", " OR ", " Or "]));
            }
            let mut all = [true; 3];
            for j in 0..=rng.below(3) {
                if j > 0 {
                    out.push_str(rng.pick(&["&", " && ", " and ", " AND ", " anD "]));
                }
                let term = random_unary(rng, depth, out);
                for k in 0..3 {
                    all[k] &= term[k];
                }
            }
            for k in 0..3 {
                any[k] |= all[k];
            }
        }
        any
    }

    fn random_unary(rng: &mut Lcg, depth: usize, out: &mut String) -> [bool; 3] {
        let agents = agents();
        match rng.below(if depth == 0 { 2 } else { 4 }) {
            2 => {
                out.push_str(rng.pick(&["!", "! ", "not ", "NOT ", "Not "]));
                random_unary(rng, depth - 1, out).map(|v| !v)
            }
            3 => {
                out.push_str(rng.pick(&["(", "( "]));
                let inner = random_expr(rng, depth - 1, out);
                out.push_str(rng.pick(&[")", " )"]));
                inner
            }
            kind => {
                let skill = rng.pick(&["a", "b", "c", "English", "Sales.L2", "_x", "zz"]);
                out.push_str(skill);
                let level = |agent: &BTreeMap<String, u32>| agent.get(skill).copied().unwrap_or(0);
                if kind == 0 {
                    return agents.each_ref().map(|agent| level(agent) > 0);
                }
                let op = rng.pick(&["=", "==", "!=", ">", ">=", "<", "<="]);
                let value = [0, 1, 3, 4, 5, 7, u32::MAX][rng.below(7)];
                out.push_str(&format!(" {op} {value}"));
                agents.each_ref().map(|agent| {
                    let level = level(agent);
                    match op {
                        "=" | "==" => level == value,
                        "!=" => level != value,
                        ">" => level > value,
                        ">=" => level >= value,
                        "<" => level < value,
                        _ => level <= value,
                    }
                })
            }
        }
    }

    #[test]
    fn random_valid_expressions_agree_with_reference() {
        let agents = agents();
        let mut rng = Lcg(0x0dd_ba11);
        let mut checked = 0;
        for _ in 0..400 {
            let mut text = String::new();
            let expected = random_expr(&mut rng, 3, &mut text);
            if text.chars().count() > MAX_LEN {
                continue;
            }
            checked += 1;
            let expr = SkillExpr::parse(&text).unwrap_or_else(|e| panic!("{e}"));
            for (agent, expected) in agents.iter().zip(expected) {
                assert_eq!(expr.matches(agent), expected, "{text:?} against {agent:?}");
            }
        }
        assert!(
            checked >= 300,
            "only {checked} expressions fit in {MAX_LEN} characters"
        );
    }

    /// Throws a few hundred garbage strings at the parser: random pieces of the
    /// language mixed with arbitrary characters, and valid expressions with one
    /// character broken. None may panic, error positions must lie within the
    /// input, and whatever parses must parse again from its own `as_str()`.
    #[test]
    fn garbage_never_panics() {
        const PIECES: &[&str] = &[
            "a",
            "b",
            "English",
            "Sales.L2",
            "_x",
            "x-",
            "and",
            "OR",
            "Not",
            "nOt",
            "&",
            "&&",
            "|",
            "||",
            "!",
            "(",
            ")",
            "=",
            "==",
            "!=",
            ">",
            ">=",
            "<",
            "<=",
            "0",
            "5",
            "4294967295",
            "4294967296",
            "3abc",
            " ",
            "  ",
            "\t",
            "\n",
            "ñ",
            "é",
            "日本",
            "\u{0}",
            "-",
            ".",
            "🦀",
            "\u{301}",
            "\u{3000}",
            "\"",
            "\\",
        ];
        let agents = agents();
        let mut rng = Lcg(0x5eed_cafe_f00d_d00d);
        let (mut parsed, mut failed) = (0, 0);
        for round in 0..600 {
            let mut text = String::new();
            if round % 2 == 0 {
                let pieces = rng.below(if round % 10 == 0 { 400 } else { 16 });
                for _ in 0..pieces {
                    match rng.below(8) {
                        0 => text.push(
                            char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{fffd}'),
                        ),
                        1 => text.push(char::from(rng.below(128) as u8)),
                        _ => text.push_str(rng.pick(PIECES)),
                    }
                }
            } else {
                random_expr(&mut rng, 3, &mut text);
                let mut chars: Vec<char> = text.chars().collect();
                let at = rng.below(chars.len() + 1);
                let junk = rng.pick(PIECES).chars().next().unwrap_or('?');
                match rng.below(3) {
                    0 if at < chars.len() => {
                        chars.remove(at);
                    }
                    1 if at < chars.len() => chars[at] = junk,
                    _ => chars.insert(at, junk),
                }
                text = chars.into_iter().collect();
            }
            match SkillExpr::parse(&text) {
                Ok(expr) => {
                    parsed += 1;
                    let again = SkillExpr::parse(expr.as_str())
                        .unwrap_or_else(|e| panic!("{text:?} parsed but its as_str did not: {e}"));
                    for agent in &agents {
                        assert_eq!(expr.matches(agent), again.matches(agent), "{text:?}");
                    }
                }
                Err(err) => {
                    failed += 1;
                    if text.chars().count() <= MAX_LEN {
                        assert_eq!(err.source_text, text);
                    }
                    assert!(err.position <= text.chars().count(), "{text:?}: {err}");
                    assert!(!err.message.is_empty());
                    assert!(err.to_string().contains(&err.message));
                }
            }
        }
        // Guard against a generator that only ever produces one outcome.
        assert!(
            parsed > 50 && failed > 50,
            "parsed {parsed}, failed {failed}"
        );
    }
}
