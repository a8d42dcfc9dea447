/* Centinela dashboard strings (English and Spanish) and the small translation helpers app.js uses.
   Exposes exactly one global: window.CentinelaI18n. */
(function () {
  'use strict';

  const LANG_KEY = 'centinela_lang';

  const STRINGS = {
    en: {
      'app.title': 'Centinela — WhatsApp sessions',
      'app.heading': 'Centinela dashboard',
      'skip': 'Skip to content',
      'logout': 'Log out',
      'lang.switch': 'Cambiar a español',
      'yes': 'Yes',
      'no': 'No',

      'login.title': 'Sign in to Centinela',
      'login.username': 'Username',
      'login.password': 'Password',
      'login.submit': 'Sign in',
      'login.missing': 'Enter your username and password.',
      'login.invalid': 'Wrong username or password.',
      'login.tooMany': 'Too many attempts.',
      'login.expired': 'Your session has ended. Please sign in again.',
      'user.plain': '{name} ({role})',
      'user.withTenant': '{name} ({role}, {tenant})',
      'role.admin': 'admin',
      'role.tenant': 'tenant',
      'ws.live': 'live',
      'ws.reconnecting': 'reconnecting',

      'sessions.title': 'Sessions',
      'sessions.caption': 'WhatsApp sessions and their state',
      'sessions.empty': 'No sessions yet. Create one below.',
      'col.name': 'Name',
      'col.tenant': 'Tenant',
      'col.state': 'State',
      'col.reason': 'Reason',
      'col.since': 'Since',
      'col.phone': 'Phone',
      'col.actions': 'Actions',
      'state.DISCONNECTED': 'Disconnected',
      'state.CONNECTING': 'Connecting',
      'state.QR': 'Waiting for a QR scan',
      'state.AUTHENTICATED': 'Authenticated, loading',
      'state.READY': 'Ready',
      'reason.never_connected': 'Never connected',
      'reason.manual': 'Disconnected by hand',
      'reason.logout': 'Logged out',
      'reason.conflict': 'Opened elsewhere (conflict)',
      'reason.qr_timeout': 'QR not scanned in time',
      'reason.banned': 'Banned',
      'reason.proxy_blocked': 'Network path refused by WhatsApp (proxy or IP)',
      'reason.browser_crashed': 'Browser crashed',
      'reason.engine_error': 'Engine error',
      'action.connect': 'Connect',
      'action.disconnect': 'Disconnect',
      'action.logout': 'Log out',
      'action.delete': 'Delete',
      'action.show-qr': 'Show QR',
      'action.confirmDelete': 'Confirm delete',
      'action.confirmDeleteAria': 'Confirm: delete session {name}',
      'msg.queued': '{name}: queued (position {position}).',
      'msg.alreadyLive': '{name} is already connected or connecting.',
      'msg.denied': '{name}: connection refused — {reason}.',
      'msg.disconnect': '{name} disconnected.',
      'msg.logout': '{name} logged out.',
      'msg.deleted': '{name} deleted.',
      'msg.confirmDelete': 'Press “Confirm delete” within 5 seconds to delete {name}.',

      'new.title': 'New session',
      'new.name': 'Name',
      'new.tenant': 'Tenant id',
      'new.submit': 'Create',
      'new.missing': 'Fill in the name (and the tenant id).',
      'new.created': 'Session {name} created.',

      'qr.title': 'Link a device',
      'qr.for': 'Session: {name}',
      'qr.alt': 'QR code to link session {name}',
      'qr.expiresIn': 'This code expires in {time}',
      'qr.expired': 'This code has expired; a new one is on its way.',
      'qr.instructions': 'Scan with WhatsApp → Linked devices',
      'qr.gone': 'This session is no longer showing a QR.',

      'send.title': 'Send a test message',
      'send.session': 'Session (READY only)',
      'send.to': 'To (digits with country code)',
      'send.text': 'Text',
      'send.submit': 'Send',
      'send.none': 'No session is READY',
      'send.missing': 'Choose a session and fill in the number and the text.',
      'send.ok': 'Accepted: message {id} ({status}).',

      'adm.title': 'Admission control',
      'adm.caption': 'Connection limits per organization',
      'adm.empty': 'No organizations yet.',
      'adm.global': 'Connection attempts in the last hour: {n} of {limit}',
      'adm.globalBlocked': 'global limit reached',
      'adm.col.org': 'Organization',
      'adm.col.canConnect': 'Can connect',
      'adm.col.reason': 'Block reason',
      'adm.col.remaining': 'Time left',
      'adm.col.attempts': 'Attempts (24 h)',
      'adm.col.block515': '515 block',
      'adm.col.lastFailure': 'Last failure',
      'adm.queued': 'Queued, position {position}:',
      'adm.startsIn': 'starts in {time}',
      'adm.startsNow': 'starting',
      'adm.denied': 'Refused: {reason}.',
      'adm.waitMinutes': 'wait {n} min',
      'adm.action.unblock': 'Unblock',
      'adm.action.reset-cooldown': 'Reset cooldown',
      'adm.done.unblock': '{id} unblocked.',
      'adm.done.reset-cooldown': 'Cooldown of {id} reset.',
      'block.server_rate_limit': 'server-wide rate limit',
      'block.daily_limit': 'daily limit reached',
      'block.cooldown_after_failure': 'cooldown after a failure',
      'block.error_515_block': 'blocked after error 515',
      'block.capacity': 'no free capacity',
      'block.tenant_session_limit': 'tenant session limit reached',
      'countdown.left': '{time} left',
      'countdown.over': 'over',

      'log.title': 'Live supervisor log',
      'log.filterTenant': 'Tenant contains',
      'log.filterLevel': 'Minimum level',
      'log.pause': 'Pause',
      'log.resume': 'Resume ({n} waiting)',
      'log.linesLabel': 'Log lines, newest last',
      'log.audit': 'audit: {actor} {action}',

      'sim.title': 'Demo phone',
      'sim.hint': 'A simulated phone acting on the demo WhatsApp devices.',
      'sim.phone': 'Phone number that scans',
      'sim.scanTitle': 'Sessions showing a QR',
      'sim.scan': 'Scan QR of {name}',
      'sim.noQr': 'No session is showing a QR.',
      'sim.from': 'Incoming from',
      'sim.text': 'Incoming text',
      'sim.devicesTitle': 'Devices',
      'sim.noDevices': 'No devices.',
      'sim.device': '{id} · {state} · {phone}',
      'sim.state.UNPAIRED': 'unpaired',
      'sim.state.CONNECTED': 'connected',
      'sim.state.CONFLICT': 'conflict',
      'sim.state.TOS_BLOCK': 'blocked (terms of service)',
      'sim.action.logout': 'Log out from the phone',
      'sim.action.tos-block': 'Ban (TOS_BLOCK)',
      'sim.action.pair': 'Type code {code}',
      'sim.done.pair': 'Code typed on the phone.',
      'qr.usePhone': 'Link with phone number instead',
      'qr.phoneLabel': 'Phone number (international, digits only)',
      'qr.getCode': 'Get a code',
      'qr.code': 'Code: {code}',
      'qr.codeShown': 'Code ready: WhatsApp → Linked devices → Link with phone number.',
      'sim.action.proxy-block': 'Block the network path (PROXYBLOCK)',
      'sim.action.incoming': 'Incoming message',
      'sim.done.scan': 'QR scanned.',
      'sim.done.logout': 'Logged out from the phone.',
      'sim.done.tos-block': 'Account banned (TOS_BLOCK).',
      'sim.done.proxy-block': 'Network path blocked (PROXYBLOCK).',
      'sim.done.incoming': 'Incoming message sent.',

      'toast.incoming': '{session}: message from {from}: {text}',
      'toast.ack': '{session}: message {id} {ack}',
      'ack.-1': 'failed',
      'ack.0': 'pending',
      'ack.1': 'reached the server',
      'ack.2': 'delivered',
      'ack.3': 'read',
      'ack.4': 'played',

      'error.network': 'The server cannot be reached.',
      'error.not_found': 'Not found.',
      'error.internal': 'Internal server error.',
      'error.unavailable': 'Service unavailable, try again soon.',
    },

    es: {
      'app.title': 'Centinela — sesiones de WhatsApp',
      'app.heading': 'Panel de Centinela',
      'skip': 'Saltar al contenido',
      'logout': 'Salir',
      'lang.switch': 'Switch to English',
      'yes': 'Sí',
      'no': 'No',

      'login.title': 'Ingresar a Centinela',
      'login.username': 'Usuario',
      'login.password': 'Contraseña',
      'login.submit': 'Ingresar',
      'login.missing': 'Escribe tu usuario y tu contraseña.',
      'login.invalid': 'Usuario o contraseña incorrectos.',
      'login.tooMany': 'Demasiados intentos.',
      'login.expired': 'Tu sesión terminó. Vuelve a ingresar.',
      'user.plain': '{name} ({role})',
      'user.withTenant': '{name} ({role}, {tenant})',
      'role.admin': 'administrador',
      'role.tenant': 'cliente',
      'ws.live': 'en vivo',
      'ws.reconnecting': 'reconectando',

      'sessions.title': 'Sesiones',
      'sessions.caption': 'Sesiones de WhatsApp y su estado',
      'sessions.empty': 'Todavía no hay sesiones. Crea una abajo.',
      'col.name': 'Nombre',
      'col.tenant': 'Cliente',
      'col.state': 'Estado',
      'col.reason': 'Motivo',
      'col.since': 'Desde',
      'col.phone': 'Teléfono',
      'col.actions': 'Acciones',
      'state.DISCONNECTED': 'Desconectada',
      'state.CONNECTING': 'Conectando',
      'state.QR': 'Esperando el escaneo del QR',
      'state.AUTHENTICATED': 'Autenticada, cargando',
      'state.READY': 'Lista',
      'reason.never_connected': 'Nunca se conectó',
      'reason.manual': 'Desconectada a mano',
      'reason.logout': 'Sesión cerrada',
      'reason.conflict': 'Abierta en otro lugar (conflicto)',
      'reason.qr_timeout': 'El QR no se escaneó a tiempo',
      'reason.banned': 'Bloqueada por WhatsApp',
      'reason.proxy_blocked': 'WhatsApp rechaza la red (proxy o IP)',
      'reason.browser_crashed': 'El navegador se cayó',
      'reason.engine_error': 'Error del motor',
      'action.connect': 'Conectar',
      'action.disconnect': 'Desconectar',
      'action.logout': 'Cerrar sesión',
      'action.delete': 'Eliminar',
      'action.show-qr': 'Ver QR',
      'action.confirmDelete': 'Confirmar',
      'action.confirmDeleteAria': 'Confirmar: eliminar la sesión {name}',
      'msg.queued': '{name}: en cola (posición {position}).',
      'msg.alreadyLive': '{name} ya está conectada o conectándose.',
      'msg.denied': '{name}: conexión rechazada — {reason}.',
      'msg.disconnect': '{name} desconectada.',
      'msg.logout': 'Se cerró la sesión de {name}.',
      'msg.deleted': '{name} eliminada.',
      'msg.confirmDelete': 'Pulsa “Confirmar” antes de 5 segundos para eliminar {name}.',

      'new.title': 'Nueva sesión',
      'new.name': 'Nombre',
      'new.tenant': 'Id del cliente',
      'new.submit': 'Crear',
      'new.missing': 'Completa el nombre (y el id del cliente).',
      'new.created': 'Sesión {name} creada.',

      'qr.title': 'Vincular un dispositivo',
      'qr.for': 'Sesión: {name}',
      'qr.alt': 'Código QR para vincular la sesión {name}',
      'qr.expiresIn': 'Este código vence en {time}',
      'qr.expired': 'Este código venció; ya viene uno nuevo.',
      'qr.instructions': 'Escanea con WhatsApp → Dispositivos vinculados',
      'qr.gone': 'Esta sesión ya no muestra un QR.',

      'send.title': 'Enviar un mensaje de prueba',
      'send.session': 'Sesión (solo READY)',
      'send.to': 'Para (dígitos con código de país)',
      'send.text': 'Texto',
      'send.submit': 'Enviar',
      'send.none': 'Ninguna sesión está READY',
      'send.missing': 'Elige una sesión y completa el número y el texto.',
      'send.ok': 'Aceptado: mensaje {id} ({status}).',

      'adm.title': 'Control de admisión',
      'adm.caption': 'Límites de conexión por organización',
      'adm.empty': 'Todavía no hay organizaciones.',
      'adm.global': 'Intentos de conexión en la última hora: {n} de {limit}',
      'adm.globalBlocked': 'se alcanzó el límite global',
      'adm.col.org': 'Organización',
      'adm.col.canConnect': 'Puede conectar',
      'adm.col.reason': 'Motivo del bloqueo',
      'adm.col.remaining': 'Tiempo restante',
      'adm.col.attempts': 'Intentos (24 h)',
      'adm.col.block515': 'Bloqueo 515',
      'adm.col.lastFailure': 'Última falla',
      'adm.queued': 'En cola, posición {position}:',
      'adm.startsIn': 'empieza en {time}',
      'adm.startsNow': 'empezando',
      'adm.denied': 'Rechazada: {reason}.',
      'adm.waitMinutes': 'esperar {n} min',
      'adm.action.unblock': 'Desbloquear',
      'adm.action.reset-cooldown': 'Reiniciar espera',
      'adm.done.unblock': '{id} desbloqueada.',
      'adm.done.reset-cooldown': 'Se reinició la espera de {id}.',
      'block.server_rate_limit': 'límite de frecuencia del servidor',
      'block.daily_limit': 'se alcanzó el límite diario',
      'block.cooldown_after_failure': 'espera tras una falla',
      'block.error_515_block': 'bloqueo tras el error 515',
      'block.capacity': 'sin capacidad libre',
      'block.tenant_session_limit': 'se alcanzó el límite de sesiones del cliente',
      'countdown.left': 'faltan {time}',
      'countdown.over': 'terminó',

      'log.title': 'Registro del supervisor en vivo',
      'log.filterTenant': 'El cliente contiene',
      'log.filterLevel': 'Nivel mínimo',
      'log.pause': 'Pausar',
      'log.resume': 'Reanudar ({n} en espera)',
      'log.linesLabel': 'Líneas del registro, la más nueva al final',
      'log.audit': 'auditoría: {actor} {action}',

      'sim.title': 'Teléfono de demostración',
      'sim.hint': 'Un teléfono simulado que actúa sobre los dispositivos de WhatsApp de la demo.',
      'sim.phone': 'Número del teléfono que escanea',
      'sim.scanTitle': 'Sesiones que muestran un QR',
      'sim.scan': 'Escanear el QR de {name}',
      'sim.noQr': 'Ninguna sesión muestra un QR.',
      'sim.from': 'Mensaje entrante de',
      'sim.text': 'Texto entrante',
      'sim.devicesTitle': 'Dispositivos',
      'sim.noDevices': 'No hay dispositivos.',
      'sim.device': '{id} · {state} · {phone}',
      'sim.state.UNPAIRED': 'sin vincular',
      'sim.state.CONNECTED': 'conectado',
      'sim.state.CONFLICT': 'conflicto',
      'sim.state.TOS_BLOCK': 'bloqueado (términos del servicio)',
      'sim.action.logout': 'Cerrar sesión desde el teléfono',
      'sim.action.tos-block': 'Banear (TOS_BLOCK)',
      'sim.action.pair': 'Escribir el código {code}',
      'sim.done.pair': 'Código escrito en el teléfono.',
      'qr.usePhone': 'Vincular con número de teléfono',
      'qr.phoneLabel': 'Número de teléfono (internacional, solo dígitos)',
      'qr.getCode': 'Obtener un código',
      'qr.code': 'Código: {code}',
      'qr.codeShown': 'Código listo: WhatsApp → Dispositivos vinculados → Vincular con número de teléfono.',
      'sim.action.proxy-block': 'Bloquear la red (PROXYBLOCK)',
      'sim.action.incoming': 'Mensaje entrante',
      'sim.done.scan': 'QR escaneado.',
      'sim.done.logout': 'Sesión cerrada desde el teléfono.',
      'sim.done.tos-block': 'Cuenta baneada (TOS_BLOCK).',
      'sim.done.proxy-block': 'Red bloqueada (PROXYBLOCK).',
      'sim.done.incoming': 'Mensaje entrante enviado.',

      'toast.incoming': '{session}: mensaje de {from}: {text}',
      'toast.ack': '{session}: mensaje {id} {ack}',
      'ack.-1': 'falló',
      'ack.0': 'pendiente',
      'ack.1': 'llegó al servidor',
      'ack.2': 'entregado',
      'ack.3': 'leído',
      'ack.4': 'reproducido',

      'error.network': 'No se puede contactar al servidor.',
      'error.not_found': 'No encontrado.',
      'error.internal': 'Error interno del servidor.',
      'error.unavailable': 'Servicio no disponible, prueba de nuevo en un rato.',
    },
  };

  function pick() {
    let saved = null;
    try { saved = localStorage.getItem(LANG_KEY); } catch (e) { /* storage disabled */ }
    if (saved === 'es' || saved === 'en') return saved;
    return String(navigator.language || '').toLowerCase().startsWith('es') ? 'es' : 'en';
  }

  let lang = pick();

  const has = (key) => STRINGS[lang][key] !== undefined || STRINGS.en[key] !== undefined;

  // The string for key in the current language (English as fallback), with {var} filled in.
  function t(key, vars) {
    const text = STRINGS[lang][key] !== undefined ? STRINGS[lang][key] : STRINGS.en[key];
    if (text === undefined) return key;
    return text.replace(/\{(\w+)\}/g, (m, k) => (vars && vars[k] !== undefined && vars[k] !== null ? String(vars[k]) : m));
  }

  // A translated code (reason, state...), or the code itself when there is no translation.
  const tCode = (prefix, code) => (code !== undefined && code !== null && has(prefix + code) ? t(prefix + code) : (code || '—'));

  function setLang(next) {
    lang = next === 'es' ? 'es' : 'en';
    try { localStorage.setItem(LANG_KEY, lang); } catch (e) { /* storage disabled */ }
  }

  // Static markup: <html lang>, the title, [data-i18n] text and [data-i18n-aria] labels.
  function applyStatic() {
    document.documentElement.lang = lang;
    document.title = t('app.title');
    document.querySelectorAll('[data-i18n]').forEach((n) => { n.textContent = t(n.dataset.i18n); });
    document.querySelectorAll('[data-i18n-aria]').forEach((n) => n.setAttribute('aria-label', t(n.dataset.i18nAria)));
  }

  const rtf = {};
  // "2 min ago" / "hace 2 min" for an RFC 3339 time in the past.
  function relTime(iso) {
    const secs = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (!Number.isFinite(secs)) return '—';
    const fmt = rtf[lang] || (rtf[lang] = new Intl.RelativeTimeFormat(lang, { numeric: 'auto', style: 'short' }));
    const unit = [['day', 86400], ['hour', 3600], ['minute', 60]].find(([, size]) => secs >= size);
    return unit ? fmt.format(-Math.floor(secs / unit[1]), unit[0]) : fmt.format(-secs, 'second');
  }

  window.CentinelaI18n = Object.freeze({ t, has, tCode, setLang, applyStatic, relTime, lang: () => lang });
}());
