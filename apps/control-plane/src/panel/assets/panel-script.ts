/**
 * The panel's only client script, served as `/assets/panel.<hash>.js` (never inline: the CSP
 * has no 'unsafe-inline'). Pages work without it; it adds the live parts, each keyed by a
 * data attribute:
 * - `data-live="URL"`: the element's HTML is re-fetched every 2 s (server-rendered fragment);
 *   focus is kept on the element with the same id.
 * - `data-pairing`: the add-workstation countdown and the code's status, polled every 2 s.
 * - `data-copy="ID"`: copies the text of element ID.
 * - `data-log="URL"`: follows a run's events (server-sent events; the browser resumes with
 *   Last-Event-ID after a drop, and events at or below the last seq seen are ignored).
 * - `time[data-relative]`: "12 s ago", refreshed every second.
 */
export const PANEL_SCRIPT = String.raw`
(function () {
  'use strict';
  var POLL_MS = 2000;

  function relative(iso) {
    var s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (s < 60) return s + ' s ago';
    if (s < 3600) return Math.floor(s / 60) + ' min ago';
    if (s < 86400) return Math.floor(s / 3600) + ' h ago';
    return Math.floor(s / 86400) + ' d ago';
  }
  function refreshTimes(root) {
    var els = (root || document).querySelectorAll('time[data-relative]');
    for (var i = 0; i < els.length; i++) els[i].textContent = relative(els[i].getAttribute('datetime'));
  }

  function signedOut(res) {
    if (res.status === 401 || (res.redirected && /\/sign-in/.test(res.url))) {
      window.location.reload();
      return true;
    }
    return false;
  }

  function live(el) {
    var url = el.getAttribute('data-live');
    var busy = false;
    // A refresh between pointerdown and click would swallow the click: hold still meanwhile.
    var holding = false;
    el.addEventListener('pointerdown', function () { holding = true; });
    document.addEventListener('pointerup', function () { setTimeout(function () { holding = false; }, 500); });
    setInterval(function () {
      if (busy || holding || document.hidden) return;
      busy = true;
      fetch(url, { headers: { accept: 'text/html' }, cache: 'no-store' })
        .then(function (res) {
          if (signedOut(res) || !res.ok) return;
          return res.text().then(function (html) {
            if (html === el.getAttribute('data-last')) return;
            var active = document.activeElement;
            var focusId = active && el.contains(active) ? active.id : '';
            el.innerHTML = html;
            el.setAttribute('data-last', html);
            refreshTimes(el);
            if (focusId) {
              var again = document.getElementById(focusId);
              if (again) again.focus();
            }
          });
        })
        .catch(function () {})
        .then(function () { busy = false; });
    }, POLL_MS);
  }

  function pairing(el) {
    var expires = Date.parse(el.getAttribute('data-expires-at'));
    var statusUrl = el.getAttribute('data-status-url');
    var countdown = el.querySelector('[data-countdown]');
    var status = el.querySelector('[data-pairing-status]');
    var done = el.querySelector('[data-pairing-done]');
    var finished = false;
    function tick() {
      if (finished) return;
      var left = Math.max(0, Math.round((expires - Date.now()) / 1000));
      var m = Math.floor(left / 60);
      var s = left % 60;
      countdown.textContent = left > 0 ? 'Code expires in ' + m + ':' + (s < 10 ? '0' : '') + s : 'Code expired';
    }
    function poll() {
      fetch(statusUrl, { headers: { accept: 'application/json' }, cache: 'no-store' })
        .then(function (res) {
          if (signedOut(res) || !res.ok) return;
          return res.json().then(function (p) {
            status.textContent = p.label;
            status.setAttribute('data-state', p.status);
            if (p.status === 'registered' || p.status === 'redeemed') {
              finished = p.online === true;
              countdown.textContent = p.status === 'registered' ? 'Code used' : 'Code redeemed';
            }
            if (p.online && p.workstation_url) {
              var a = document.createElement('a');
              a.href = p.workstation_url;
              a.textContent = p.display_name + ' is online';
              done.textContent = '';
              done.appendChild(a);
              done.hidden = false;
            }
          });
        })
        .catch(function () {})
        .then(function () { if (!finished) setTimeout(poll, POLL_MS); });
    }
    tick();
    setInterval(tick, 1000);
    setTimeout(poll, 500);
  }

  function copy(btn) {
    btn.addEventListener('click', function () {
      var target = document.getElementById(btn.getAttribute('data-copy'));
      var text = target ? target.textContent : '';
      var note = function (msg) {
        var out = document.getElementById(btn.getAttribute('data-copy') + '-copied');
        if (out) out.textContent = msg;
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(function () { note('Copied'); }, function () { note('Select the line and copy it'); });
      } else {
        note('Select the line and copy it');
      }
    });
  }

  function logView(el) {
    var url = el.getAttribute('data-log');
    var out = el.querySelector('[data-log-output]');
    var state = el.querySelector('[data-log-state]');
    var last = Number(el.getAttribute('data-after-seq') || '0');
    var pending = '';
    var scheduled = false;
    var decoder = new TextDecoder();
    function flush() {
      scheduled = false;
      if (!pending) return;
      var stick = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
      out.appendChild(document.createTextNode(pending));
      pending = '';
      if (stick) out.scrollTop = out.scrollHeight;
    }
    // The lines of one network chunk (many events) are added in one text node, right after
    // them: a task, not the next animation frame (up to 16 ms later, never in a hidden tab).
    function add(text) {
      pending += text;
      if (!scheduled) {
        scheduled = true;
        setTimeout(flush, 0);
      }
    }
    var es = new EventSource(url);
    state.textContent = 'Following the log…';
    es.onmessage = function (m) {
      var e = JSON.parse(m.data);
      if (e.seq <= last) return;
      last = e.seq;
      el.setAttribute('data-last-seq', String(last));
      if (e.type === 'log') add(e.payload.encoding === 'base64' ? decoder.decode(Uint8Array.from(atob(e.payload.data), function (ch) { return ch.charCodeAt(0); }), { stream: true }) : String(e.payload.data));
      else if (e.type === 'error') add('[error] ' + e.payload.message + '\n');
      else if (e.type === 'command_status') add('[command ' + e.payload.command_id + ' ' + e.payload.state + (e.payload.exit_code === undefined ? '' : ' exit ' + e.payload.exit_code) + ']\n');
      else if (e.type === 'terminal_status') add('[run ' + e.payload.status + (e.payload.exit_code === undefined || e.payload.exit_code === null ? '' : ', exit ' + e.payload.exit_code) + ']\n');
    };
    es.addEventListener('end', function () {
      es.close();
      flush();
      state.textContent = 'The run has ended; this is its whole log.';
    });
    es.onerror = function () {
      if (es.readyState === EventSource.CLOSED) state.textContent = 'The log stream closed; reload to follow again.';
      else state.textContent = 'Reconnecting…';
    };
    es.onopen = function () { state.textContent = 'Following the log…'; };
  }

  function start() {
    refreshTimes(document);
    setInterval(function () { refreshTimes(document); }, 1000);
    var i, els;
    els = document.querySelectorAll('[data-live]');
    for (i = 0; i < els.length; i++) live(els[i]);
    els = document.querySelectorAll('[data-pairing]');
    for (i = 0; i < els.length; i++) pairing(els[i]);
    els = document.querySelectorAll('[data-copy]');
    for (i = 0; i < els.length; i++) copy(els[i]);
    els = document.querySelectorAll('[data-log]');
    for (i = 0; i < els.length; i++) logView(els[i]);
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
`;
