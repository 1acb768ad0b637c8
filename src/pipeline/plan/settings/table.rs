//! Reading a settings table: every key checked against the settings there are, every value
//! typed by its key's shape, each with the line and column it is at.

use super::*;

/// A line and a column, from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct At {
    pub(super) line: usize,
    pub(super) column: usize,
}

/// A value, of its key's shape.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    Text(String),
    Bool(bool),
    Number(u64),
    List(Vec<(String, At)>),
}

#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) key: &'static Key,
    pub(super) value: Value,
    /// Where the key is.
    pub(super) at: At,
    /// Where the value is.
    pub(super) value_at: At,
}

/// A TOML text and how to find the settings in it.
pub(super) struct Toml<'a> {
    pub(super) file: &'a Path,
    pub(super) text: &'a str,
    /// The number of the text's first line in the file.
    pub(super) first_line: usize,
    /// The table's path from the top (`package.metadata.ruchy-image`), or none for a whole
    /// `ruchy-image.toml`.
    pub(super) table: &'a [&'a str],
}

impl Toml<'_> {
    pub(super) fn at(&self, span: Option<std::ops::Range<usize>>) -> At {
        let start = span.map_or(0, |s| s.start).min(self.text.len());
        let before = &self.text[..start];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        At {
            line: self.first_line + before.matches('\n').count(),
            column: before[line_start..].chars().count() + 1,
        }
    }

    pub(super) fn error(&self, at: At, message: impl Into<String>) -> Error {
        Error::Setting {
            at: format!("{}:{}:{}", self.file.display(), at.line, at.column),
            message: message.into(),
        }
    }
}

/// The closest key to a misspelt one, if one is close.
pub(super) fn closest<'a>(
    name: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let distance = |a: &str, b: &str| {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut previous = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let substitution = previous + usize::from(ca != *cb);
                previous = row[j + 1];
                row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
            }
        }
        row[b.len()]
    };
    candidates
        .map(|c| (distance(name, c), c))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, c)| c)
}

/// One setting read: its key known, its value of the key's shape.
pub(super) fn entry(
    text: &Toml,
    name: &str,
    item: &Item,
    at: At,
    in_preset: bool,
) -> Result<Entry> {
    let Some(key) = find_key(name) else {
        if let Some((_, why)) = REFUSED.iter().find(|(refused, _)| *refused == name) {
            return Err(text.error(at, format!("`{name}` cannot be a setting: {why}")));
        }
        let hint = match closest(name, KEYS.iter().map(|k| k.name).chain(["presets"])) {
            Some(close) => format!("did you mean `{close}`?"),
            None => "settings are named as the long flags of `ruchy-image build --help`".into(),
        };
        return Err(text.error(at, format!("unknown setting `{name}`: {hint}")));
    };
    if in_preset && !key.per_preset {
        let takes: Vec<&str> = KEYS
            .iter()
            .filter(|k| k.per_preset)
            .map(|k| k.name)
            .collect();
        return Err(text.error(
            at,
            format!(
                "`{name}` cannot be set per preset: a preset's table takes {}",
                takes.join(", ")
            ),
        ));
    }
    let value_at = text.at(item.span());
    let wrong = |found: &str| {
        text.error(
            value_at,
            format!("`{name}` takes {}, not {found}", key.shape.expected(name)),
        )
    };
    let Some(value) = item.as_value() else {
        return Err(wrong(item.type_name()));
    };
    let value = match (key.shape, value) {
        (Text | Shape::Path, toml_edit::Value::String(s)) => Value::Text(s.value().clone()),
        (TextOrNumber, toml_edit::Value::String(s)) => Value::Text(s.value().clone()),
        (TextOrNumber | Number, toml_edit::Value::Integer(n)) => {
            let n = *n.value();
            match u64::try_from(n) {
                Ok(n) => Value::Number(n),
                Err(_) => {
                    return Err(text.error(
                        value_at,
                        format!("`{name}` takes a number of 0 or more, not {n}"),
                    ))
                }
            }
        }
        // A decimal is the text the flag would take (`build-cpus = 1.5`): its parser judges it.
        (TextOrNumber, toml_edit::Value::Float(f)) => Value::Text(f.value().to_string()),
        // cargo's own profile keys take true for strip (strip = true is symbols).
        (Text, toml_edit::Value::Boolean(b)) if name == "strip" => match *b.value() {
            true => Value::Text(Strip::Symbols.name().into()),
            false => Value::Text(Strip::None.name().into()),
        },
        (Bool, toml_edit::Value::Boolean(b)) => Value::Bool(*b.value()),
        (List | PathList, toml_edit::Value::Array(items)) => {
            let mut list = Vec::new();
            for item in items.iter() {
                match item {
                    toml_edit::Value::String(s) => {
                        list.push((s.value().clone(), text.at(item.span())))
                    }
                    other => {
                        return Err(text.error(
                            text.at(other.span()),
                            format!(
                                "`{name}` takes {}, not a list holding {}",
                                key.shape.expected(name),
                                other.type_name()
                            ),
                        ))
                    }
                }
            }
            Value::List(list)
        }
        (_, other) => return Err(wrong(other.type_name())),
    };
    Ok(Entry {
        key,
        value,
        at,
        value_at,
    })
}

/// The `presets` table: one table of overrides per preset name.
pub(super) fn presets(text: &Toml, item: &Item, at: At) -> Result<Vec<(Preset, Vec<Entry>)>> {
    let Some(table) = item.as_table_like() else {
        return Err(text.error(
            at,
            "`presets` takes a table per preset, such as [presets.size] (in Cargo.toml, [package.metadata.ruchy-image.presets.size])",
        ));
    };
    let mut presets = Vec::new();
    for (name, _) in table.iter() {
        let (key, item) = table.get_key_value(name).expect("listed");
        let at = text.at(key.span());
        let preset: Preset = name
            .parse()
            .map_err(|e: Error| text.error(at, e.to_string()))?;
        let Some(overrides) = item.as_table_like() else {
            return Err(text.error(
                at,
                format!("`presets.{name}` takes a table of overrides, such as lto = \"thin\""),
            ));
        };
        presets.push((preset, entries_of(text, overrides)?));
    }
    Ok(presets)
}

pub(super) fn entries_of(text: &Toml, table: &dyn TableLike) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for (name, _) in table.iter() {
        let (key, item) = table.get_key_value(name).expect("listed");
        entries.push(entry(text, name, item, text.at(key.span()), true)?);
    }
    Ok(entries)
}

/// A file may set only one of a contradicting pair.
pub(super) fn no_contradiction(text: &Toml, entries: &[Entry]) -> Result<()> {
    let set = |e: &&Entry| !matches!(e.value, Value::Bool(false));
    for (a, b) in PAIRS {
        let one = entries.iter().filter(set).find(|e| e.key.name == *a);
        let other = entries.iter().filter(set).find(|e| e.key.name == *b);
        if let (Some(one), Some(other)) = (one, other) {
            return Err(text.error(
                other.at,
                format!("`{b}` contradicts `{a}` (line {}): keep one", one.at.line),
            ));
        }
    }
    Ok(())
}
