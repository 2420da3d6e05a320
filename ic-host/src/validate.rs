//! The checks the IC applies to a module before installing it (the subset that matters for
//! canisters built from Rust): where imports come from, how exports are named, and the size
//! limits of `../shared/spec/ic-platform.md` A2. Each rejection names the rule it broke.

use std::collections::HashSet;

use wasmparser::{ExternalKind, Parser, Payload, TypeRef, ValType, Validator, WasmFeatures};

/// Module limits of the IC.
pub const MAX_MODULE_BYTES: usize = 100 << 20;
pub const MAX_CODE_SECTION_BYTES: usize = 10 << 20;
pub const MAX_FUNCTIONS: usize = 50_000;
pub const MAX_GLOBALS: usize = 1_000;
pub const MAX_EXPORTED_METHODS: usize = 1_000;
pub const MAX_INSTRUCTIONS_PER_FUNCTION: usize = 1_000_000;
pub const MAX_CUSTOM_SECTIONS: usize = 16;
pub const MAX_CUSTOM_SECTIONS_BYTES: usize = 1 << 20;

/// Exports the IC gives a meaning to when they start with `canister_`.
const SPECIAL_EXPORTS: [&str; 7] = [
    "canister_init",
    "canister_pre_upgrade",
    "canister_post_upgrade",
    "canister_inspect_message",
    "canister_heartbeat",
    "canister_global_timer",
    "canister_on_low_wasm_memory",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("invalid wasm module: {0}")]
    Invalid(String),
    #[error("rule 'imports only from ic0': the module imports {module}.{name}")]
    ForeignImport { module: String, name: String },
    #[error("rule 'no imported memories, tables or globals': the module imports {kind} {module}.{name}")]
    ImportKind { kind: &'static str, module: String, name: String },
    #[error("rule 'exported names': {name:?} starts with canister_ but is not a System API entry point")]
    BadExportName { name: String },
    #[error("rule 'exported names': method {name:?} is exported as both update and query")]
    DuplicateMethod { name: String },
    #[error("rule 'module size': {found} bytes, limit {limit}")]
    ModuleTooLarge { found: usize, limit: usize },
    #[error("rule 'code section size': {found} bytes, limit {limit}")]
    CodeTooLarge { found: usize, limit: usize },
    #[error("rule 'number of functions': {found}, limit {limit}")]
    TooManyFunctions { found: usize, limit: usize },
    #[error("rule 'number of globals': {found}, limit {limit}")]
    TooManyGlobals { found: usize, limit: usize },
    #[error("rule 'exported methods': {found}, limit {limit}")]
    TooManyMethods { found: usize, limit: usize },
    #[error("rule 'instructions per function': function {index} has {found}, limit {limit}")]
    FunctionTooLong { index: usize, found: usize, limit: usize },
    #[error("rule 'custom sections': {found} named icp:public/icp:private sections, limit {limit}")]
    TooManyCustomSections { found: usize, limit: usize },
    #[error("rule 'custom sections size': {found} bytes, limit {limit}")]
    CustomSectionsTooLarge { found: usize, limit: usize },
    #[error("rule 'reserved names': the module uses the host's reserved name {name:?}")]
    Reserved { name: String },
    /// The host's own rule: it persists mutable globals as numbers (see `docs/IC-HOST-STATE.md`),
    /// and a reference has no value outside its instance.
    #[error("rule 'persisted globals': mutable global {index} holds a reference, which the host cannot persist")]
    ReferenceGlobal { index: usize },
}

/// The wasm features the IC enables: SIMD without relaxed SIMD, bulk memory, reference types,
/// multi-value, sign extension, saturating conversions; no threads.
pub fn ic_features() -> WasmFeatures {
    let mut f = WasmFeatures::WASM2;
    f.remove(WasmFeatures::RELAXED_SIMD);
    f.remove(WasmFeatures::THREADS);
    f
}

/// Who may read a metadata section (`read_state` on `/canister/<id>/metadata/<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// `icp:public NAME`: anyone.
    Public,
    /// `icp:private NAME`: the controllers only.
    Private,
}

/// One `icp:public NAME` or `icp:private NAME` custom section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// NAME, without the `icp:public ` / `icp:private ` prefix.
    pub name: String,
    pub visibility: Visibility,
    pub bytes: Vec<u8>,
}

/// What a valid module offers.
#[derive(Debug, Clone, Default)]
pub struct ModuleInfo {
    pub update_methods: Vec<String>,
    pub query_methods: Vec<String>,
    pub imports: Vec<String>,
    /// The `candid:service` metadata (public or private custom section), if present.
    pub candid_service: Option<String>,
    /// Every metadata section, in module order.
    pub metadata: Vec<Metadata>,
}

pub fn validate(wasm: &[u8]) -> Result<ModuleInfo, ValidationError> {
    if wasm.len() > MAX_MODULE_BYTES {
        return Err(ValidationError::ModuleTooLarge { found: wasm.len(), limit: MAX_MODULE_BYTES });
    }
    Validator::new_with_features(ic_features()).validate_all(wasm).map_err(|e| ValidationError::Invalid(e.to_string()))?;
    let invalid = |e: wasmparser::BinaryReaderError| ValidationError::Invalid(e.to_string());

    let mut info = ModuleInfo::default();
    let (mut functions, mut globals, mut custom_count, mut custom_bytes) = (0usize, 0usize, 0usize, 0usize);
    let mut function_index = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(invalid)? {
            Payload::ImportSection(s) => {
                for import in s.into_imports() {
                    let import = import.map_err(invalid)?;
                    let (module, name) = (import.module.to_string(), import.name.to_string());
                    if module != "ic0" {
                        return Err(ValidationError::ForeignImport { module, name });
                    }
                    let kind = match import.ty {
                        TypeRef::Func(_) | TypeRef::FuncExact(_) => {
                            functions += 1;
                            info.imports.push(name);
                            continue;
                        }
                        TypeRef::Memory(_) => "memory",
                        TypeRef::Table(_) => "table",
                        TypeRef::Global(_) => "global",
                        TypeRef::Tag(_) => "tag",
                    };
                    return Err(ValidationError::ImportKind { kind, module, name });
                }
            }
            Payload::FunctionSection(s) => functions += s.count() as usize,
            Payload::GlobalSection(s) => {
                for global in s {
                    let ty = global.map_err(invalid)?.ty;
                    if ty.mutable && !matches!(ty.content_type, ValType::I32 | ValType::I64 | ValType::F32 | ValType::F64 | ValType::V128) {
                        return Err(ValidationError::ReferenceGlobal { index: globals });
                    }
                    globals += 1;
                }
            }
            Payload::ExportSection(s) => {
                let mut seen = HashSet::new();
                for export in s {
                    let export = export.map_err(invalid)?;
                    let name = export.name;
                    if name.starts_with("__ic_host") {
                        return Err(ValidationError::Reserved { name: name.to_string() });
                    }
                    if export.kind != ExternalKind::Func {
                        continue;
                    }
                    let method = name
                        .strip_prefix("canister_update ")
                        .map(|m| (m, true))
                        .or_else(|| name.strip_prefix("canister_query ").map(|m| (m, false)))
                        .or_else(|| name.strip_prefix("canister_composite_query ").map(|m| (m, false)));
                    match method {
                        Some((m, update)) => {
                            if !seen.insert(m.to_string()) {
                                return Err(ValidationError::DuplicateMethod { name: m.to_string() });
                            }
                            if update { info.update_methods.push(m.to_string()) } else { info.query_methods.push(m.to_string()) }
                        }
                        None if name.starts_with("canister_") && !SPECIAL_EXPORTS.contains(&name) => {
                            return Err(ValidationError::BadExportName { name: name.to_string() });
                        }
                        None => {}
                    }
                }
                if seen.len() > MAX_EXPORTED_METHODS {
                    return Err(ValidationError::TooManyMethods { found: seen.len(), limit: MAX_EXPORTED_METHODS });
                }
            }
            Payload::CodeSectionStart { size, .. } if size as usize > MAX_CODE_SECTION_BYTES => {
                return Err(ValidationError::CodeTooLarge { found: size as usize, limit: MAX_CODE_SECTION_BYTES });
            }
            Payload::CodeSectionEntry(body) => {
                let mut reader = body.get_operators_reader().map_err(invalid)?;
                let mut count = 0usize;
                while !reader.eof() {
                    reader.read().map_err(invalid)?;
                    count += 1;
                }
                if count > MAX_INSTRUCTIONS_PER_FUNCTION {
                    return Err(ValidationError::FunctionTooLong { index: function_index, found: count, limit: MAX_INSTRUCTIONS_PER_FUNCTION });
                }
                function_index += 1;
            }
            Payload::CustomSection(c) => {
                let name = c.name();
                let meta = name
                    .strip_prefix("icp:public ")
                    .map(|m| (m, Visibility::Public))
                    .or_else(|| name.strip_prefix("icp:private ").map(|m| (m, Visibility::Private)));
                if let Some((meta, visibility)) = meta {
                    custom_count += 1;
                    custom_bytes += c.data().len() + meta.len();
                    if meta == "candid:service" {
                        info.candid_service = Some(String::from_utf8_lossy(c.data()).into_owned());
                    }
                    info.metadata.push(Metadata { name: meta.to_string(), visibility, bytes: c.data().to_vec() });
                }
            }
            _ => {}
        }
    }
    if functions > MAX_FUNCTIONS {
        return Err(ValidationError::TooManyFunctions { found: functions, limit: MAX_FUNCTIONS });
    }
    if globals > MAX_GLOBALS {
        return Err(ValidationError::TooManyGlobals { found: globals, limit: MAX_GLOBALS });
    }
    if custom_count > MAX_CUSTOM_SECTIONS {
        return Err(ValidationError::TooManyCustomSections { found: custom_count, limit: MAX_CUSTOM_SECTIONS });
    }
    if custom_bytes > MAX_CUSTOM_SECTIONS_BYTES {
        return Err(ValidationError::CustomSectionsTooLarge { found: custom_bytes, limit: MAX_CUSTOM_SECTIONS_BYTES });
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_sections_are_kept_with_their_visibility() {
        let wasm = wat::parse_str(
            r#"(module
                (@custom "icp:public candid:service" "service : {}")
                (@custom "icp:private secret" "\00\01")
                (@custom "name-of-something-else" "ignored"))"#,
        )
        .unwrap();
        let info = validate(&wasm).unwrap();
        assert_eq!(info.candid_service.as_deref(), Some("service : {}"));
        assert_eq!(
            info.metadata,
            [
                Metadata { name: "candid:service".into(), visibility: Visibility::Public, bytes: b"service : {}".to_vec() },
                Metadata { name: "secret".into(), visibility: Visibility::Private, bytes: vec![0, 1] },
            ]
        );
    }

    #[test]
    fn mutable_reference_globals_are_refused() {
        let wasm = wat::parse_str("(module (global i32 (i32.const 0)) (global (mut funcref) (ref.null func)))").unwrap();
        assert_eq!(validate(&wasm).unwrap_err(), ValidationError::ReferenceGlobal { index: 1 });
        let immutable = wat::parse_str("(module (global funcref (ref.null func)) (global (mut i64) (i64.const 0)))").unwrap();
        assert!(validate(&immutable).is_ok());
    }
}
