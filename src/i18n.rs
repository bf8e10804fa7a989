//! Languages. Every user-facing explanation exists in English and Chinese; the catalog and the
//! signature database carry both, and the few interface labels live in [`label`].

use serde::Deserialize;

/// A language of the reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    /// The language the environment asks for: `LC_ALL`, then `LC_MESSAGES`, then `LANG`
    /// (the POSIX order). Anything starting with `zh` means Chinese; everything else English.
    pub fn from_env() -> Lang {
        for var in ["LC_ALL", "LC_MESSAGES", "LANG"] {
            if let Ok(value) = std::env::var(var) {
                if value.is_empty() {
                    continue;
                }
                return if value.to_ascii_lowercase().starts_with("zh") {
                    Lang::Zh
                } else {
                    Lang::En
                };
            }
        }
        Lang::En
    }
}

/// A text in both languages, as the data files write it (`title.en = …`, `title.zh = …`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Text {
    pub en: String,
    pub zh: String,
}

impl Text {
    pub fn get(&self, lang: Lang) -> &str {
        match lang {
            Lang::En => &self.en,
            Lang::Zh => &self.zh,
        }
    }
}

/// The interface's own labels (headings of the text reports). Kept in code because they are
/// part of the layout, not knowledge; the knowledge lives in `data/`.
pub fn label(lang: Lang, key: &'static str) -> &'static str {
    let (en, zh) = match key {
        "what" => ("What happened", "发生了什么"),
        "technical" => ("Technical detail", "技术细节"),
        "check" => ("What to check", "检查步骤"),
        "fix" => ("How to fix", "修复方法"),
        "related" => ("Related causes", "相关原因"),
        "layer" => ("layer", "层级"),
        "statuses" => ("statuses", "状态码"),
        "line" => ("line", "行"),
        "unrecognised" => ("not recognised", "无法识别"),
        "summary" => ("Summary", "汇总"),
        "lines" => ("lines", "行"),
        "page" => ("error page", "错误页面"),
        "meaning" => ("Meaning", "含义"),
        "client-saw" => ("the client saw", "客户端收到"),
        "no-status" => (
            "no error status (response already under way)",
            "无错误状态码（响应已开始发送）",
        ),
        "nothing" => (
            "Nothing in this input names a known cause. Paste a whole error-log line (with its \
             time and level) or the error page, or run `gwdoctor explain CAUSE-ID`.",
            "输入中没有可识别的故障原因。请粘贴完整的错误日志行（包括时间和级别）或整个错误页面，\
             或运行 `gwdoctor explain 原因ID`。",
        ),
        "product-only" => (
            "identified the product, but no cause",
            "识别出了产品，但没有识别出原因",
        ),
        "also-possible" => (
            "Also possible (named as alternatives)",
            "其他可能原因（作为备选）",
        ),
        "cause-list" => ("Causes named", "识别出的原因"),
        "times" => ("times", "次"),
        "example" => ("e.g.", "例如"),
        "binary" => (
            "the input looks binary (it holds NUL bytes); only its text lines were read",
            "输入看起来是二进制数据（含有 NUL 字节）；只读取了其中的文本行",
        ),
        "lossy" => (
            "the input is not valid UTF-8; invalid bytes were replaced",
            "输入不是有效的 UTF-8；无效字节已被替换",
        ),
        "long-line" => ("line cut at", "行被截断于"),
        _ => (key, key),
    };
    match lang {
        Lang::En => en,
        Lang::Zh => zh,
    }
}
