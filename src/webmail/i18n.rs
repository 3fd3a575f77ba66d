//! The webmail's UI strings in Spanish and English.
//!
//! Invariants: every key exists in both tables (a unit test checks it); Spanish is
//! the default for this deployment; a key that is missing (a programming error) shows
//! as the key itself rather than panicking. Keys are short snake_case names; a
//! template writes `{{ page.lang.t("key") }}`, Rust code `lang.t("key")`.

use std::collections::HashMap;
use std::sync::OnceLock;

/// A UI language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Lang {
    #[default]
    Es,
    En,
}

impl Lang {
    /// The UI string for `key` in this language.
    pub fn t(self, key: &str) -> &'static str {
        static MAPS: OnceLock<[HashMap<&'static str, &'static str>; 2]> = OnceLock::new();
        let maps =
            MAPS.get_or_init(|| [ES.iter().copied().collect(), EN.iter().copied().collect()]);
        let map = match self {
            Lang::Es => &maps[0],
            Lang::En => &maps[1],
        };
        match map.get(key) {
            Some(s) => s,
            None => {
                tracing::warn!(key, "webmail: missing UI string");
                // Leak-free fallback: find the key in the other table, else a marker.
                "??"
            }
        }
    }

    /// `es` or `en` (the `lang` attribute and the settings value).
    pub fn code(self) -> &'static str {
        match self {
            Lang::Es => "es",
            Lang::En => "en",
        }
    }

    /// Parses a settings value (`es`/`en`, case-insensitive).
    pub fn from_code(s: &str) -> Option<Lang> {
        match s.trim().to_ascii_lowercase().as_str() {
            "es" => Some(Lang::Es),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// Picks the language from an Accept-Language header (RFC 9110 12.5.4): the
    /// supported language with the highest q-value; Spanish when none is supported.
    pub fn from_accept_language(header: Option<&str>) -> Lang {
        let Some(h) = header else { return Lang::Es };
        let mut best: Option<(f32, usize, Lang)> = None;
        for (pos, item) in h.split(',').enumerate() {
            let mut it = item.split(';');
            let tag = it.next().unwrap_or("").trim().to_ascii_lowercase();
            let mut q = 1.0f32;
            for p in it {
                if let Some(v) = p.trim().strip_prefix("q=") {
                    q = v.trim().parse().unwrap_or(0.0);
                }
            }
            let primary = tag.split('-').next().unwrap_or("");
            let lang = match primary {
                "es" => Lang::Es,
                "en" => Lang::En,
                _ => continue,
            };
            if q <= 0.0 {
                continue;
            }
            // Highest q wins; on a tie the earlier entry.
            if best.is_none_or(|(bq, bpos, _)| q > bq || (q == bq && pos < bpos)) {
                best = Some((q, pos, lang));
            }
        }
        best.map(|b| b.2).unwrap_or(Lang::Es)
    }

    /// Both languages, for the settings page.
    pub const ALL: [Lang; 2] = [Lang::Es, Lang::En];
}

/// Spanish strings.
const ES: &[(&str, &str)] = &[
    ("app_name", "Correo web"),
    ("login_title", "Iniciar sesión"),
    ("user", "Usuario"),
    ("password", "Contraseña"),
    ("login", "Entrar"),
    ("logout", "Salir"),
    ("login_failed", "Usuario o contraseña incorrectos."),
    (
        "login_rate_limited",
        "Demasiados intentos fallidos. Espere unos minutos e inténtelo de nuevo.",
    ),
    ("session_expired", "Su sesión ha caducado. Vuelva a entrar."),
    ("folders", "Carpetas"),
    ("inbox", "Bandeja de entrada"),
    ("drafts", "Borradores"),
    ("sent", "Enviados"),
    ("trash", "Papelera"),
    ("junk", "Correo no deseado"),
    ("archive", "Archivo"),
    ("unread", "no leídos"),
    ("unread_one", "no leído"),
    ("messages", "mensajes"),
    ("message_one", "mensaje"),
    ("compose", "Redactar"),
    ("contacts", "Contactos"),
    ("settings", "Ajustes"),
    ("manage_folders", "Gestionar carpetas"),
    ("new_folder", "Nueva carpeta"),
    ("folder_name", "Nombre de la carpeta"),
    ("create", "Crear"),
    ("rename", "Renombrar"),
    ("rename_to", "Nuevo nombre"),
    ("delete", "Eliminar"),
    (
        "delete_folder_confirm",
        "Se eliminará la carpeta y todos sus mensajes.",
    ),
    ("folder_created", "Carpeta creada."),
    ("folder_renamed", "Carpeta renombrada."),
    ("folder_deleted", "Carpeta eliminada."),
    ("from", "De"),
    ("to", "Para"),
    ("cc", "Cc"),
    ("bcc", "Cco"),
    ("subject", "Asunto"),
    ("date", "Fecha"),
    ("size", "Tamaño"),
    ("body", "Cuerpo"),
    ("all_fields", "Todo"),
    ("no_subject", "(sin asunto)"),
    ("no_sender", "(sin remitente)"),
    ("empty_folder", "Esta carpeta está vacía."),
    ("no_results", "Ningún mensaje coincide con la búsqueda."),
    ("search", "Buscar"),
    ("search_in", "Buscar en"),
    ("clear_search", "Quitar búsqueda"),
    ("results_for", "Resultados para"),
    ("select", "Seleccionar"),
    ("select_all", "Seleccionar todos"),
    ("with_selected", "Con los seleccionados"),
    ("mark_read", "Marcar como leído"),
    ("mark_unread", "Marcar como no leído"),
    ("flag", "Marcar con estrella"),
    ("unflag", "Quitar estrella"),
    ("flagged", "Destacado"),
    ("attachment", "Adjunto"),
    ("attachments", "Adjuntos"),
    ("move", "Mover"),
    ("move_to", "Mover a"),
    ("apply", "Aplicar"),
    ("nothing_selected", "No ha seleccionado ningún mensaje."),
    ("moved", "Mensajes movidos."),
    ("deleted", "Mensajes eliminados."),
    ("updated", "Mensajes actualizados."),
    ("page", "Página"),
    ("of", "de"),
    ("previous", "Anterior"),
    ("next", "Siguiente"),
    ("sort_by", "Ordenar por"),
    ("ascending", "ascendente"),
    ("descending", "descendente"),
    ("back_to_list", "Volver a la lista"),
    ("reply", "Responder"),
    ("reply_all", "Responder a todos"),
    ("forward", "Reenviar"),
    ("raw_source", "Ver código fuente"),
    ("download", "Descargar"),
    (
        "remote_images_blocked",
        "Se han bloqueado imágenes remotas para proteger su privacidad.",
    ),
    ("show_remote_images", "Mostrar imágenes remotas"),
    (
        "message_not_found",
        "El mensaje no existe (quizá se movió o se eliminó).",
    ),
    ("folder_not_found", "La carpeta no existe."),
    ("not_found", "No encontrado"),
    ("new_mail", "Ha llegado correo nuevo."),
    ("reload", "Actualizar"),
    ("service_moving_title", "Servicio en traslado"),
    (
        "service_moving",
        "El servicio se está trasladando al otro servidor del clúster. Inténtelo de nuevo en unos segundos; no se ha guardado ningún cambio.",
    ),
    ("try_again", "Intentar de nuevo"),
    (
        "forbidden",
        "La solicitud no es válida (token de seguridad ausente o incorrecto). Recargue la página e inténtelo de nuevo.",
    ),
    ("error", "Error"),
    (
        "error_internal",
        "Se produjo un error interno. Inténtelo de nuevo.",
    ),
    ("invalid_name", "Nombre no válido."),
    ("folder_exists", "Ya existe una carpeta con ese nombre."),
    ("not_allowed", "Operación no permitida."),
    ("language", "Idioma"),
    ("lang_es", "Español"),
    ("lang_en", "English"),
    ("save", "Guardar"),
    ("settings_saved", "Ajustes guardados."),
    ("signed_in_as", "Sesión de"),
    ("main_menu", "Menú principal"),
    ("skip_to_content", "Saltar al contenido"),
    ("message_list", "Lista de mensajes"),
    ("message", "Mensaje"),
    ("html_body", "Contenido del mensaje"),
    ("bytes", "bytes"),
    // Compose and contacts (used by compose.rs / contacts.rs).
    ("send", "Enviar"),
    ("save_draft", "Guardar borrador"),
    ("attach", "Adjuntar archivos"),
    ("sent_ok", "Mensaje enviado."),
    ("draft_saved", "Borrador guardado."),
    ("recipients_required", "Indique al menos un destinatario."),
    ("invalid_address", "Dirección no válida"),
    ("name", "Nombre"),
    ("email", "Correo electrónico"),
    ("add", "Añadir"),
    ("edit", "Editar"),
    ("contact_added", "Contacto añadido."),
    ("contact_saved", "Contacto guardado."),
    ("contact_deleted", "Contacto eliminado."),
    ("no_contacts", "Su libreta de direcciones está vacía."),
    ("wrote", "escribió"),
    ("forwarded_message", "Mensaje reenviado"),
    ("edit_draft", "Editar borrador"),
    // Compose and contacts, added by helper "compose".
    ("quote_on", "El"),
    ("message_too_large", "El mensaje es demasiado grande"),
    ("size_limit", "límite"),
    ("reattach", "Vuelva a seleccionar los archivos adjuntos."),
    (
        "send_failed",
        "No se pudo completar la operación por un error temporal del servidor; inténtelo de nuevo.",
    ),
    ("too_many_recipients", "Demasiados destinatarios."),
    (
        "unknown_recipient",
        "Destinatario desconocido en este servidor (no se ha enviado nada)",
    ),
    (
        "separate_with_commas",
        "Separe varias direcciones con comas.",
    ),
    ("max_size", "Tamaño máximo del mensaje"),
    ("contact_not_found", "El contacto no existe."),
    (
        "contact_invalid",
        "Datos del contacto no válidos (nombre o nota demasiado largos).",
    ),
    ("contacts_full", "La libreta de direcciones está llena."),
    ("edit_contact", "Editar contacto"),
    ("new_contact", "Nuevo contacto"),
    ("contact_note", "Nota"),
    ("contact_cancel", "Cancelar"),
    ("contact_actions", "Acciones"),
    ("write_to", "Escribir a este contacto"),
];

/// English strings.
const EN: &[(&str, &str)] = &[
    ("app_name", "Webmail"),
    ("login_title", "Sign in"),
    ("user", "User"),
    ("password", "Password"),
    ("login", "Sign in"),
    ("logout", "Sign out"),
    ("login_failed", "Wrong user name or password."),
    (
        "login_rate_limited",
        "Too many failed attempts. Wait a few minutes and try again.",
    ),
    (
        "session_expired",
        "Your session has expired. Please sign in again.",
    ),
    ("folders", "Folders"),
    ("inbox", "Inbox"),
    ("drafts", "Drafts"),
    ("sent", "Sent"),
    ("trash", "Trash"),
    ("junk", "Junk"),
    ("archive", "Archive"),
    ("unread", "unread"),
    ("unread_one", "unread"),
    ("messages", "messages"),
    ("message_one", "message"),
    ("compose", "Compose"),
    ("contacts", "Contacts"),
    ("settings", "Settings"),
    ("manage_folders", "Manage folders"),
    ("new_folder", "New folder"),
    ("folder_name", "Folder name"),
    ("create", "Create"),
    ("rename", "Rename"),
    ("rename_to", "New name"),
    ("delete", "Delete"),
    (
        "delete_folder_confirm",
        "The folder and all its messages will be deleted.",
    ),
    ("folder_created", "Folder created."),
    ("folder_renamed", "Folder renamed."),
    ("folder_deleted", "Folder deleted."),
    ("from", "From"),
    ("to", "To"),
    ("cc", "Cc"),
    ("bcc", "Bcc"),
    ("subject", "Subject"),
    ("date", "Date"),
    ("size", "Size"),
    ("body", "Body"),
    ("all_fields", "All"),
    ("no_subject", "(no subject)"),
    ("no_sender", "(no sender)"),
    ("empty_folder", "This folder is empty."),
    ("no_results", "No message matches the search."),
    ("search", "Search"),
    ("search_in", "Search in"),
    ("clear_search", "Clear search"),
    ("results_for", "Results for"),
    ("select", "Select"),
    ("select_all", "Select all"),
    ("with_selected", "With selected"),
    ("mark_read", "Mark as read"),
    ("mark_unread", "Mark as unread"),
    ("flag", "Flag"),
    ("unflag", "Unflag"),
    ("flagged", "Flagged"),
    ("attachment", "Attachment"),
    ("attachments", "Attachments"),
    ("move", "Move"),
    ("move_to", "Move to"),
    ("apply", "Apply"),
    ("nothing_selected", "No message selected."),
    ("moved", "Messages moved."),
    ("deleted", "Messages deleted."),
    ("updated", "Messages updated."),
    ("page", "Page"),
    ("of", "of"),
    ("previous", "Previous"),
    ("next", "Next"),
    ("sort_by", "Sort by"),
    ("ascending", "ascending"),
    ("descending", "descending"),
    ("back_to_list", "Back to the list"),
    ("reply", "Reply"),
    ("reply_all", "Reply all"),
    ("forward", "Forward"),
    ("raw_source", "View source"),
    ("download", "Download"),
    (
        "remote_images_blocked",
        "Remote images were blocked to protect your privacy.",
    ),
    ("show_remote_images", "Show remote images"),
    (
        "message_not_found",
        "The message does not exist (it may have been moved or deleted).",
    ),
    ("folder_not_found", "The folder does not exist."),
    ("not_found", "Not found"),
    ("new_mail", "New mail has arrived."),
    ("reload", "Refresh"),
    ("service_moving_title", "Service moving"),
    (
        "service_moving",
        "The service is moving to the other server of the cluster. Try again in a few seconds; nothing was changed.",
    ),
    ("try_again", "Try again"),
    (
        "forbidden",
        "The request is not valid (security token missing or wrong). Reload the page and try again.",
    ),
    ("error", "Error"),
    (
        "error_internal",
        "An internal error occurred. Please try again.",
    ),
    ("invalid_name", "Invalid name."),
    ("folder_exists", "A folder with that name already exists."),
    ("not_allowed", "Operation not allowed."),
    ("language", "Language"),
    ("lang_es", "Español"),
    ("lang_en", "English"),
    ("save", "Save"),
    ("settings_saved", "Settings saved."),
    ("signed_in_as", "Signed in as"),
    ("main_menu", "Main menu"),
    ("skip_to_content", "Skip to content"),
    ("message_list", "Message list"),
    ("message", "Message"),
    ("html_body", "Message content"),
    ("bytes", "bytes"),
    ("send", "Send"),
    ("save_draft", "Save draft"),
    ("attach", "Attach files"),
    ("sent_ok", "Message sent."),
    ("draft_saved", "Draft saved."),
    ("recipients_required", "Enter at least one recipient."),
    ("invalid_address", "Invalid address"),
    ("name", "Name"),
    ("email", "Email"),
    ("add", "Add"),
    ("edit", "Edit"),
    ("contact_added", "Contact added."),
    ("contact_saved", "Contact saved."),
    ("contact_deleted", "Contact deleted."),
    ("no_contacts", "Your address book is empty."),
    ("wrote", "wrote"),
    ("forwarded_message", "Forwarded message"),
    ("edit_draft", "Edit draft"),
    ("quote_on", "On"),
    ("message_too_large", "The message is too large"),
    ("size_limit", "limit"),
    ("reattach", "Please select the attachments again."),
    (
        "send_failed",
        "The operation could not be completed because of a temporary server error; please try again.",
    ),
    ("too_many_recipients", "Too many recipients."),
    (
        "unknown_recipient",
        "Unknown recipient on this server (nothing was sent)",
    ),
    (
        "separate_with_commas",
        "Separate several addresses with commas.",
    ),
    ("max_size", "Maximum message size"),
    ("contact_not_found", "The contact does not exist."),
    (
        "contact_invalid",
        "Invalid contact details (name or note too long).",
    ),
    ("contacts_full", "The address book is full."),
    ("edit_contact", "Edit contact"),
    ("new_contact", "New contact"),
    ("contact_note", "Note"),
    ("contact_cancel", "Cancel"),
    ("contact_actions", "Actions"),
    ("write_to", "Write to this contact"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_key_is_in_both_languages() {
        let es: HashSet<&str> = ES.iter().map(|(k, _)| *k).collect();
        let en: HashSet<&str> = EN.iter().map(|(k, _)| *k).collect();
        let only_es: Vec<_> = es.difference(&en).collect();
        let only_en: Vec<_> = en.difference(&es).collect();
        assert!(only_es.is_empty(), "keys only in Spanish: {only_es:?}");
        assert!(only_en.is_empty(), "keys only in English: {only_en:?}");
        assert_eq!(es.len(), ES.len(), "duplicate key in ES");
        assert_eq!(en.len(), EN.len(), "duplicate key in EN");
        for (k, v) in ES.iter().chain(EN.iter()) {
            assert!(!v.trim().is_empty(), "empty string for {k}");
        }
    }

    #[test]
    fn templates_use_only_known_keys() {
        // Every `t("key")` in the webmail's templates and sources names a known key.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        for dir in ["templates/webmail", "src/webmail"] {
            for e in std::fs::read_dir(root.join(dir)).unwrap() {
                let p = e.unwrap().path();
                if p.is_file() {
                    files.push(p);
                }
            }
        }
        let known: HashSet<&str> = ES.iter().map(|(k, _)| *k).collect();
        for f in files {
            if f.file_name().is_some_and(|n| n == "i18n.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            for (i, _) in text.match_indices(".t(\"") {
                let rest = &text[i + 4..];
                let Some(end) = rest.find('"') else { continue };
                let key = &rest[..end];
                assert!(
                    known.contains(key),
                    "{}: unknown UI key {key:?}",
                    f.display()
                );
            }
        }
    }

    #[test]
    fn accept_language_picks_the_best_supported() {
        assert_eq!(Lang::from_accept_language(None), Lang::Es);
        assert_eq!(Lang::from_accept_language(Some("en-US,en;q=0.9")), Lang::En);
        assert_eq!(
            Lang::from_accept_language(Some("fr, en;q=0.5, es;q=0.8")),
            Lang::Es
        );
        assert_eq!(Lang::from_accept_language(Some("de")), Lang::Es);
        assert_eq!(
            Lang::from_accept_language(Some("es-EC, en;q=0.1")),
            Lang::Es
        );
        assert_eq!(Lang::from_accept_language(Some("en;q=0, es;q=0")), Lang::Es);
        assert_eq!(
            Lang::from_accept_language(Some("en;q=0.3, es;q=0")),
            Lang::En
        );
    }

    #[test]
    fn lookup_works_in_both() {
        assert_eq!(Lang::Es.t("inbox"), "Bandeja de entrada");
        assert_eq!(Lang::En.t("inbox"), "Inbox");
        assert_eq!(Lang::En.t("no-such-key"), "??");
    }
}
