/*
 * The sandbox's browser phone: plays a WhatsApp user's phone against wa-sip-bridge in sandbox mode.
 * Protocol (SSE at /sandbox/events, POSTs under /sandbox/api): see the sandbox protocol notes.
 * Plain ES2020, no build step, no external URLs.
 *
 * Test hooks: window.sandboxPhone = { state, wacid, pc, localStream, remoteStream, digitsSent, lastError, hello }
 * and document.body.dataset.state. After a call ends, pc/localStream/remoteStream keep pointing at that
 * call's (closed/stopped) objects until the next call starts, so tests can check that the mic was released.
 */
(function () {
  'use strict';

  const FETCH_TIMEOUT_MS = 10000;
  const GATHER_TIMEOUT_MS = 3000;
  const ENDED_SCREEN_MS = 1500;
  const MAX_TIMELINE_ROWS = 2000;

  const hooks = {
    state: 'idle', // 'idle' | 'calling' | 'ringing-out' | 'ringing-in' | 'connected' | 'ended'
    wacid: null,
    pc: null,
    localStream: null,
    remoteStream: null,
    digitsSent: '', // every DTMF digit handed to insertDTMF during the current call, in order
    lastError: null,
    hello: null, // the last `hello` (null until the SSE stream is up)
  };
  window.sandboxPhone = hooks;

  const $ = (id) => document.getElementById(id);
  const el = {
    status: $('status'), timer: $('timer'), digits: $('typed-digits'), dtmfNotice: $('dtmf-notice'),
    keypad: $('keypad'), keypadToggle: $('keypad-toggle'), mute: $('mute'), muteLabel: $('mute-label'),
    audio: $('remote-audio'), micMeter: $('level-meter'), remoteMeter: $('remote-level-meter'),
    timeline: $('timeline'), scroller: $('timeline-scroll'), jump: $('jump-latest'),
    permission: $('permission'), permissionTitle: $('permission-title'), permissionText: $('permission-text'),
    sse: $('sse-status'), userNumber: $('user-number'), pbx: $('pbx-label'), clock: $('clock'),
  };

  let business = { name: 'Demo Business', number: '' };
  /** The one call in progress (or on its "Call ended" screen), else null. */
  let call = null;
  let endedTimer = null;

  // ---------------------------------------------------------------- small helpers

  function formatNumber(e164) {
    if (typeof e164 !== 'string') return '';
    const m = /^\+1(\d{3})(\d{3})(\d{4})$/.exec(e164);
    return m ? `+1 ${m[1]} ${m[2]} ${m[3]}` : e164;
  }

  function initials(name) {
    const words = String(name || '?').trim().split(/\s+/).filter(Boolean);
    return words.slice(0, 2).map((w) => w[0].toUpperCase()).join('') || '?';
  }

  function setState(state) {
    hooks.state = state;
    document.body.dataset.state = state;
  }

  function setStatus(text, isError) {
    el.status.textContent = text;
    el.status.classList.toggle('status-error', !!isError);
  }

  function fail(context, err) {
    const message = `${context}: ${err && err.message ? err.message : String(err)}`;
    hooks.lastError = message;
    setStatus(message, true);
    addRow({ at: Date.now(), kind: 'phone', title: `Error — ${message}` });
    console.warn('[sandbox phone]', message);
  }

  /** POST JSON with a 10 s timeout; logs a `phone` row; throws with the server's {error} on 4xx/5xx. */
  async function post(path, body, keepalive) {
    const ctrl = new AbortController();
    const timeout = setTimeout(() => ctrl.abort(), FETCH_TIMEOUT_MS);
    const started = Date.now();
    try {
      const headers = { 'content-type': 'application/json' };
      if (hooks.hello && hooks.hello.clientId) headers['x-sandbox-client-id'] = String(hooks.hello.clientId);
      let res;
      try {
        res = await fetch(path, { method: 'POST', headers, body: JSON.stringify(body || {}), signal: ctrl.signal, keepalive: !!keepalive });
      } catch (err) {
        throw new Error(ctrl.signal.aborted ? `POST ${path} timed out after ${FETCH_TIMEOUT_MS / 1000} s` : `POST ${path} failed: ${err.message}`);
      }
      const text = await res.text();
      let json = null;
      try { json = text ? JSON.parse(text) : null; } catch { json = { raw: text }; }
      const wacid = (/\/calls\/([^/]+)\//.exec(path) || [])[1];
      const shown = wacid ? path.replace(wacid, ':wacid') : path; // the row's wacid chip names the call
      addRow({
        at: Date.now(), kind: 'phone', title: `POST ${shown} → ${res.status} (${Date.now() - started} ms)`,
        wacid: wacid ? decodeURIComponent(wacid) : (json && json.wacid) || null, detail: { request: body || {}, response: json },
      });
      if (!res.ok) throw new Error((json && json.error) || `POST ${path} → HTTP ${res.status}`);
      return json || {};
    } finally {
      clearTimeout(timeout);
    }
  }

  // ---------------------------------------------------------------- WebRTC

  /**
   * WhatsApp's own offers carry only Opus (48 kHz stereo) plus telephone-event/8000 for DTMF, so the page
   * offers the same: the bridge must cope with exactly what real WhatsApp clients send, not with
   * Chromium's long codec list. Other payload types are dropped from the audio m-line together with
   * their rtpmap/fmtp/rtcp-fb lines. If nothing would be left (an offer without Opus) the SDP is kept.
   */
  function opusOnly(sdp) {
    const lines = sdp.split('\r\n');
    const keep = new Set();
    for (const line of lines) {
      const m = /^a=rtpmap:(\d+) (opus\/48000\/2|telephone-event\/8000)$/i.exec(line);
      if (m) keep.add(m[1]);
    }
    if (keep.size === 0) return sdp;
    let inAudio = false;
    const out = [];
    for (const line of lines) {
      if (line.startsWith('m=')) {
        inAudio = line.startsWith('m=audio ');
        if (inAudio) {
          const parts = line.split(' ');
          out.push([...parts.slice(0, 3), ...parts.slice(3).filter((pt) => keep.has(pt))].join(' '));
          continue;
        }
      }
      const pt = /^a=(?:rtpmap|fmtp|rtcp-fb):(\d+)/.exec(line);
      if (inAudio && pt && !keep.has(pt[1])) continue;
      out.push(line);
    }
    return out.join('\r\n');
  }

  /** Resolves when ICE gathering is complete, or after `ms` (then the SDP has whatever was gathered). */
  function gatheringDone(pc, ms) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => { pc.removeEventListener('icegatheringstatechange', check); resolve(false); }, ms);
      function check() {
        if (pc.iceGatheringState !== 'complete') return;
        clearTimeout(timer);
        pc.removeEventListener('icegatheringstatechange', check);
        resolve(true);
      }
      pc.addEventListener('icegatheringstatechange', check);
    });
  }

  function countCandidates(sdp) {
    return (sdp.match(/^a=candidate:/gm) || []).length;
  }

  // `?processing=off` turns the browser's voice processing off (tests send a steady tone, which noise
  // suppression would treat as noise); by default the mic is processed like a phone's.
  const voiceProcessing = new URLSearchParams(location.search).get('processing') !== 'off';

  async function openMic(c) {
    if (!navigator.mediaDevices) {
      // Plain http on another address than localhost (the sandbox's --listen): not a secure context.
      throw new Error(`this browser gives the microphone only to https or localhost pages: allow ${location.origin} as secure `
        + '(Chrome: chrome://flags/#unsafely-treat-insecure-origin-as-secure), or open the sandbox on the machine it runs on');
    }
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: voiceProcessing, noiseSuppression: voiceProcessing, autoGainControl: voiceProcessing },
    });
    if (!alive(c)) { stream.getTracks().forEach((t) => t.stop()); throw new Error('call already over'); }
    c.localStream = stream;
    c.track = stream.getAudioTracks()[0];
    hooks.localStream = stream;
    addRow({ at: Date.now(), kind: 'phone', title: `Microphone allowed (${c.track ? c.track.label || 'audio' : 'no track'})` });
    meters.watch('mic', stream);
    return c.track;
  }

  function makePeerConnection(c) {
    // No STUN/TURN: the bridge's media server is reached directly (host candidates only).
    const pc = new RTCPeerConnection({ iceServers: [] });
    c.pc = pc;
    hooks.pc = pc;
    pc.addEventListener('track', (ev) => {
      const stream = ev.streams[0] || new MediaStream([ev.track]);
      c.remoteStream = stream;
      hooks.remoteStream = stream;
      el.audio.srcObject = stream;
      el.audio.play().catch(() => { /* autoplay may wait for a user gesture */ });
      meters.watch('remote', stream);
    });
    pc.addEventListener('connectionstatechange', () => {
      if (!alive(c)) return;
      addRow({ at: Date.now(), kind: 'phone', title: `WebRTC connection ${pc.connectionState}` });
      if (pc.connectionState === 'failed') fail('Media', new Error('WebRTC connection failed (ICE/DTLS)'));
    });
    return pc;
  }

  // ---------------------------------------------------------------- call lifecycle

  /** False once the call has ended (or another took its place): late async steps then stop. */
  function alive(c) {
    return c === call && !c.over;
  }

  function newCall(direction, wacid) {
    if (endedTimer) { clearTimeout(endedTimer); endedTimer = null; }
    const c = {
      direction, wacid: wacid || null, pc: null, localStream: null, track: null, remoteStream: null,
      answerSdp: null, connectedAt: null, timer: null, muted: false, over: false, ready: null, early: [],
    };
    call = c;
    Object.assign(hooks, { wacid: c.wacid, pc: null, localStream: null, remoteStream: null, digitsSent: '', lastError: null });
    el.digits.textContent = '';
    el.dtmfNotice.hidden = true;
    setMuted(c, false);
    showKeypad(false);
    return c;
  }

  /** "Call the business": build a WhatsApp-like offer and hand it to the bridge. */
  async function callBusiness() {
    if (call && !call.over) return;
    const c = newCall('out');
    setState('calling');
    setStatus('Calling…');
    try {
      const track = await openMic(c);
      const pc = makePeerConnection(c);
      pc.addTransceiver(track, { direction: 'sendrecv', streams: [c.localStream] });
      await pc.setLocalDescription(await pc.createOffer());
      const complete = await gatheringDone(pc, GATHER_TIMEOUT_MS);
      if (!alive(c)) return;
      const sdp = opusOnly(pc.localDescription.sdp);
      addRow({
        at: Date.now(), kind: 'phone',
        title: `Offer created: Opus + telephone-event, ${countCandidates(sdp)} ICE candidate(s)${complete ? '' : ' (gathering cut at 3 s)'}`,
        detail: { sdp },
      });
      const res = await post('/sandbox/api/calls', { sdp });
      if (!res.wacid) throw new Error('server returned no wacid');
      if (!alive(c)) {
        // Hung up while the POST was in flight: tell the bridge about the call it just created.
        post(`/sandbox/api/calls/${encodeURIComponent(res.wacid)}/hangup`).catch(() => {});
        return;
      }
      c.wacid = res.wacid;
      hooks.wacid = res.wacid;
      if (hooks.state === 'calling') { setState('ringing-out'); setStatus('Ringing…'); }
      // Events for this wacid may have overtaken the POST's response; apply them now, in order.
      const early = c.early.filter((e) => e.data.wacid === c.wacid);
      c.early = [];
      for (const e of early) handleCallEvent(e.name, e.data);
    } catch (err) {
      if (!alive(c)) return;
      fail('Call failed', err);
      endCall(c, null, { keepStatus: true });
    }
  }

  /** SSE `incoming`: ring, and answer the SDP right away (the mic stays muted until the user accepts). */
  function onIncoming(d) {
    if (call && !call.over) {
      // One call at a time, like a phone that is busy.
      addRow({ at: Date.now(), kind: 'phone', title: `Busy: declining incoming call ${d.wacid} automatically`, wacid: d.wacid });
      post(`/sandbox/api/calls/${encodeURIComponent(d.wacid)}/decline`).catch((err) => fail('Auto-decline failed', err));
      return;
    }
    const c = newCall('in', d.wacid);
    setState('ringing-in');
    setStatus(`${business.name} is calling… (agent call from ${formatNumber(d.from) || 'unknown'})`);
    ringtone.start();
    c.ready = prepareIncoming(c, d.offer);
  }

  /**
   * WhatsApp sends its SDP answer while the phone is still ringing (so media can be set up before the
   * user picks up); picking up is a separate signal. The page does the same: answer now with the mic
   * track disabled (it sends silence), POST /ringing, and only enable the track on Accept.
   */
  async function prepareIncoming(c, offer) {
    try {
      const track = await openMic(c);
      track.enabled = false;
      const pc = makePeerConnection(c);
      await pc.setRemoteDescription({ type: 'offer', sdp: offer });
      pc.addTrack(track, c.localStream); // reuses the offer's audio transceiver, making it sendrecv
      await pc.setLocalDescription(await pc.createAnswer());
      await gatheringDone(pc, GATHER_TIMEOUT_MS);
      if (!alive(c)) return false;
      const sdp = opusOnly(pc.localDescription.sdp);
      addRow({ at: Date.now(), kind: 'phone', title: `Answer created while ringing, ${countCandidates(sdp)} ICE candidate(s)`, wacid: c.wacid, detail: { sdp } });
      await post(`/sandbox/api/calls/${encodeURIComponent(c.wacid)}/ringing`, { sdp });
      return true;
    } catch (err) {
      if (!alive(c)) return false;
      fail('Incoming call failed', err);
      post(`/sandbox/api/calls/${encodeURIComponent(c.wacid)}/decline`).catch(() => {});
      endCall(c, null, { keepStatus: true });
      return false;
    }
  }

  async function acceptIncoming() {
    const c = call;
    if (!c || c.direction !== 'in' || hooks.state !== 'ringing-in' || c.accepting) return;
    c.accepting = true;
    ringtone.stop();
    setStatus('Connecting…');
    const ready = await c.ready; // the answer must reach the bridge before the accept
    if (!ready || !alive(c)) return;
    try {
      await post(`/sandbox/api/calls/${encodeURIComponent(c.wacid)}/accept`);
      if (!alive(c)) return;
      if (c.track) c.track.enabled = !c.muted;
      el.audio.play().catch(() => {});
      connected(c);
    } catch (err) {
      c.accepting = false;
      fail('Accept failed', err);
    }
  }

  function declineIncoming() {
    const c = call;
    if (!c || c.direction !== 'in' || hooks.state !== 'ringing-in') return;
    post(`/sandbox/api/calls/${encodeURIComponent(c.wacid)}/decline`).catch((err) => fail('Decline failed', err));
    endCall(c, 'Call declined');
  }

  function hangUp(leavingPage) {
    const c = call;
    if (!c || c.over) return;
    if (c.wacid) post(`/sandbox/api/calls/${encodeURIComponent(c.wacid)}/hangup`, undefined, leavingPage === true).catch((err) => fail('Hang-up failed', err));
    endCall(c, 'Call ended');
  }

  function connected(c) {
    if (c.connectedAt) return;
    ringtone.stop();
    c.connectedAt = Date.now();
    setState('connected');
    setStatus('Connected');
    el.timer.textContent = '00:00';
    c.timer = setInterval(() => {
      const s = Math.floor((Date.now() - c.connectedAt) / 1000);
      el.timer.textContent = `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
    }, 250);
  }

  /** Releases everything the call held (mic first), shows "Call ended" for a moment, then idles. */
  function endCall(c, text, opts) {
    if (c.over) return;
    c.over = true;
    ringtone.stop();
    if (c.timer) clearInterval(c.timer);
    if (c.localStream) c.localStream.getTracks().forEach((t) => t.stop());
    if (c.pc) c.pc.close();
    meters.unwatch();
    el.audio.srcObject = null;
    showKeypad(false);
    setState('ended');
    if (!(opts && opts.keepStatus)) setStatus(text || 'Call ended');
    addRow({ at: Date.now(), kind: 'phone', title: `Call over: ${el.status.textContent}`, wacid: c.wacid });
    endedTimer = setTimeout(() => {
      endedTimer = null;
      if (call !== c) return;
      call = null;
      setState('idle');
      if (!(opts && opts.keepStatus)) setStatus('Ready');
    }, ENDED_SCREEN_MS);
  }

  // ---------------------------------------------------------------- in-call controls

  function setMuted(c, muted) {
    c.muted = muted;
    if (c.track && hooks.state !== 'ringing-in') c.track.enabled = !muted;
    el.mute.setAttribute('aria-pressed', String(muted));
    el.mute.setAttribute('aria-label', muted ? 'Unmute microphone' : 'Mute microphone');
    el.muteLabel.textContent = muted ? 'Unmute' : 'Mute';
    el.mute.classList.toggle('round-on', muted);
  }

  function showKeypad(show) {
    el.keypad.hidden = !show;
    document.body.classList.toggle('keypad-open', show);
    el.keypadToggle.setAttribute('aria-pressed', String(show));
    el.keypadToggle.classList.toggle('round-on', show);
    el.keypadToggle.setAttribute('aria-label', show ? 'Hide keypad' : 'Show keypad');
  }

  function dtmfNotice(text) {
    el.dtmfNotice.textContent = text;
    el.dtmfNotice.hidden = false;
  }

  /** A keypad press: RFC 4733 telephone-events on the audio sender (how WhatsApp carries DTMF). */
  function pressKey(digit) {
    const c = call;
    if (!c || c.over || !c.pc) return;
    const sender = c.pc.getSenders().find((s) => s.track && s.track.kind === 'audio');
    const dtmf = sender && sender.dtmf;
    if (!dtmf || !dtmf.canInsertDTMF) {
      dtmfNotice('DTMF is not available on this connection yet (no telephone-event, or media not up).');
      return;
    }
    // insertDTMF replaces whatever is still queued, so queue the new digit behind the pending ones.
    dtmf.insertDTMF(dtmf.toneBuffer + digit, 120, 80);
    hooks.digitsSent += digit;
    el.digits.textContent = hooks.digitsSent;
    el.dtmfNotice.hidden = true;
  }

  // ---------------------------------------------------------------- audio: meters and ringtone

  let audioCtx = null;
  /**
   * The page's one AudioContext, or null before the user has interacted with the page: a context
   * created earlier starts suspended (and Chromium logs a warning), so an incoming call that arrives on
   * an untouched page rings silently and its meters start with the Accept click.
   */
  function getAudioContext() {
    if (!audioCtx) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      const activated = !navigator.userActivation || navigator.userActivation.hasBeenActive;
      if (!Ctx || !activated) return null;
      audioCtx = new Ctx();
    }
    if (audioCtx.state === 'suspended') audioCtx.resume().catch(() => {});
    return audioCtx;
  }

  /** Mic and remote level bars: RMS of an AnalyserNode's time-domain data, 20 times a second. */
  const meters = (function () {
    const streams = {}; // 'mic' | 'remote' -> MediaStream to meter
    const watched = {}; // 'mic' | 'remote' -> { stream, source, analyser, buf }
    let interval = null;
    const elements = { mic: el.micMeter, remote: el.remoteMeter };

    function show(which, level) {
      const meter = elements[which];
      meter.firstElementChild.style.width = `${Math.round(level * 100)}%`;
      meter.dataset.level = level.toFixed(3);
      meter.setAttribute('aria-valuenow', level.toFixed(2));
    }
    function detach(which) {
      if (!watched[which]) return;
      watched[which].source.disconnect();
      delete watched[which];
      show(which, 0);
    }
    function tick() {
      for (const which of Object.keys(watched)) {
        const w = watched[which];
        w.analyser.getFloatTimeDomainData(w.buf);
        let sum = 0;
        for (let i = 0; i < w.buf.length; i++) sum += w.buf[i] * w.buf[i];
        const rms = Math.sqrt(sum / w.buf.length);
        // -60 dBFS .. 0 dBFS mapped onto the bar.
        const db = rms > 0 ? 20 * Math.log10(rms) : -100;
        show(which, Math.max(0, Math.min(1, (db + 60) / 60)));
      }
    }
    /** Attaches analysers to the streams that have none yet (once there is an AudioContext). */
    function refresh() {
      const pending = Object.keys(streams).filter((k) => !watched[k] || watched[k].stream !== streams[k]);
      if (!pending.length) return;
      const ctx = getAudioContext();
      if (!ctx) return;
      for (const which of pending) {
        detach(which);
        const source = ctx.createMediaStreamSource(streams[which]);
        const analyser = ctx.createAnalyser();
        analyser.fftSize = 1024;
        source.connect(analyser); // not to the destination: the <audio> element plays the remote side
        watched[which] = { stream: streams[which], source, analyser, buf: new Float32Array(analyser.fftSize) };
      }
      if (!interval) interval = setInterval(tick, 50);
    }
    return {
      refresh,
      watch(which, stream) {
        if (!stream.getAudioTracks().length) return;
        streams[which] = stream;
        refresh();
      },
      unwatch() {
        for (const key of Object.keys(streams)) delete streams[key];
        for (const key of Object.keys(watched)) detach(key);
        if (interval) { clearInterval(interval); interval = null; }
      },
    };
  })();

  // Audio may start once the user has interacted: the first click/key creates the context (capture
  // phase, so before the button's own handler runs) and attaches any meters that were waiting.
  for (const type of ['pointerdown', 'click', 'keydown']) document.addEventListener(type, () => meters.refresh(), { capture: true });

  /** A two-tone ring cadence (two short bursts, then a pause) made with oscillators. */
  const ringtone = (function () {
    let interval = null;
    let gain = null;
    const oscillators = [];
    function burst(ctx, at, hz) {
      const osc = ctx.createOscillator();
      osc.type = 'sine';
      osc.frequency.value = hz;
      const env = ctx.createGain();
      env.gain.setValueAtTime(0, at);
      env.gain.linearRampToValueAtTime(0.25, at + 0.02);
      env.gain.setValueAtTime(0.25, at + 0.36);
      env.gain.linearRampToValueAtTime(0, at + 0.4);
      osc.connect(env).connect(gain);
      osc.start(at);
      osc.stop(at + 0.42);
      oscillators.push(osc);
      osc.onended = () => { const i = oscillators.indexOf(osc); if (i >= 0) oscillators.splice(i, 1); };
    }
    function cycle(ctx) {
      const t = ctx.currentTime + 0.05;
      burst(ctx, t, 784); // G5
      burst(ctx, t + 0.5, 659); // E5
    }
    return {
      start() {
        const ctx = getAudioContext();
        if (!ctx || interval) return;
        gain = ctx.createGain();
        gain.gain.value = 0.6;
        gain.connect(ctx.destination);
        cycle(ctx);
        interval = setInterval(() => cycle(ctx), 2500);
      },
      stop() {
        if (interval) { clearInterval(interval); interval = null; }
        for (const osc of oscillators.splice(0)) { try { osc.stop(); } catch { /* already stopped */ } }
        if (gain) { gain.disconnect(); gain = null; }
      },
    };
  })();

  // ---------------------------------------------------------------- permission prompt

  const permissionQueue = [];
  /** Prompts this page answered: the server replays unanswered ones on every (re)connect. */
  const permissionsAnswered = new Set();
  function onPermissionRequest(d) {
    if (permissionsAnswered.has(d.id) || permissionQueue.some((q) => q.id === d.id)) return;
    permissionQueue.push(d);
    if (permissionQueue.length === 1) showPermission();
  }
  /** Answered (here or on another page): the prompt goes. */
  function onPermissionAnswered(d) {
    permissionsAnswered.add(d.id);
    const i = permissionQueue.findIndex((q) => q.id === d.id);
    if (i < 0) return;
    permissionQueue.splice(i, 1);
    if (i === 0) showPermission();
  }
  function showPermission() {
    const d = permissionQueue[0];
    if (!d) { el.permission.hidden = true; return; }
    el.permissionTitle.textContent = `${d.businessName || business.name} would like to call you`;
    el.permissionText.textContent = d.text || '';
    el.permission.hidden = false;
    el.permission.querySelector('.perm-btn').focus();
  }
  function answerPermission(choice) {
    const d = permissionQueue.shift();
    showPermission();
    if (!d) return;
    permissionsAnswered.add(d.id);
    const label = { temporary: 'Allow for 7 days', permanent: 'Always allow', decline: "Don't allow" }[choice];
    addRow({ at: Date.now(), kind: 'phone', title: `Call permission: user chose "${label}"`, detail: { id: d.id, business: d.business, choice } });
    post(`/sandbox/api/permissions/${encodeURIComponent(d.id)}`, { choice }).catch((err) => fail('Permission answer failed', err));
  }

  // ---------------------------------------------------------------- timeline

  const BADGES = { webhook: 'webhook', api: 'API', sip: 'SIP', meta: 'Meta SIP', cdr: 'CDR', demo: 'demo agent', phone: 'phone', info: 'info' };
  let timelineOrigin = null;

  function relativeTime(at) {
    const ms = Math.max(0, at - timelineOrigin);
    const m = Math.floor(ms / 60000);
    const s = Math.floor((ms % 60000) / 1000);
    return `${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}.${String(ms % 1000).padStart(3, '0')}`;
  }

  /** An earlier row than the first shown: times are relative to it from now on, the shown ones too. */
  function moveOrigin(at) {
    timelineOrigin = at;
    for (const t of el.timeline.querySelectorAll('li > time')) t.textContent = relativeTime(Number(t.parentElement.dataset.at));
  }

  /** The row before which one at `at` goes: rows are in time order, a row at the same time after those before it. */
  function rowAfter(at) {
    let next = null;
    for (let row = el.timeline.lastElementChild; row && Number(row.dataset.at) > at; row = row.previousElementSibling) next = row;
    return next;
  }

  function seconds(v) {
    const n = Number(v);
    if (!Number.isFinite(n)) return null;
    const m = Math.floor(n / 60);
    return m ? `${m} min ${Math.round(n % 60)} s` : `${n.toFixed(1)} s`;
  }
  function between(from, to) {
    const a = Date.parse(from);
    const b = Date.parse(to);
    return Number.isFinite(a) && Number.isFinite(b) && b >= a ? seconds((b - a) / 1000) : null;
  }

  /** The CDR as a person reads it: who called whom, how it went, for how long, the media's quality. */
  function cdrSummary(r) {
    const lines = [];
    const inbound = r.direction === 'inbound';
    const user = r.customer_number || r.user_id || 'the WhatsApp user';
    const biz = r.business_number || 'the business';
    const pbx = r.agent || r.pbx_target || 'the PBX';
    lines.push(['Call', inbound ? `${user} called ${biz}, answered by ${pbx}` : `${pbx} called ${user} from ${biz}`]);
    const how = [r.outcome || r.state];
    if (r.hangup_by) how.push(`ended by ${r.hangup_by}`);
    if (r.sip_final_code) how.push(`SIP ${r.sip_final_code}${r.sip_final_reason ? ` ${r.sip_final_reason}` : ''}`);
    if (r.provider_status) how.push(`WhatsApp: ${r.provider_status}`);
    lines.push(['Outcome', how.filter(Boolean).join(' · ')]);
    const answered = inbound ? r.pbx_answered_at : r.accepted_at;
    const times = [];
    const ring = between(r.offered_at, answered);
    if (ring) times.push(`answered after ${ring}`);
    const talk = seconds(r.talk_seconds);
    if (talk) times.push(`talked ${talk}`);
    const total = between(r.offered_at, r.ended_at);
    if (total) times.push(`${total} in all`);
    if (times.length) lines.push(['Time', times.join(', ')]);
    if (r.wa_codec || r.pbx_codec) lines.push(['Codecs', `WhatsApp side ${r.wa_codec || '—'}, PBX side ${r.pbx_codec || '—'}`]);
    const q = [];
    if (r.mos !== null && r.mos !== undefined) q.push(`MOS ${r.mos}`);
    if (r.packet_loss_pct !== null && r.packet_loss_pct !== undefined) q.push(`loss ${r.packet_loss_pct} %`);
    if (r.jitter_ms !== null && r.jitter_ms !== undefined) q.push(`jitter ${r.jitter_ms} ms`);
    if (r.rtt_ms !== null && r.rtt_ms !== undefined) q.push(`RTT ${r.rtt_ms} ms`);
    if (q.length) lines.push(['Quality', q.join(', ')]);
    if (r.recording_path) lines.push(['Recording', `${r.recording_path}${r.recording_seconds ? ` (${seconds(r.recording_seconds)})` : ''}`]);
    if (r.error) lines.push(['Error', r.error]);
    const dl = document.createElement('dl');
    dl.className = 'cdr-summary';
    dl.dataset.testid = 'cdr-summary';
    for (const [k, v] of lines) {
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      dd.textContent = v;
      dl.append(dt, dd);
    }
    return dl;
  }

  function cdrTable(detail) {
    const table = document.createElement('table');
    table.className = 'cdr-table';
    for (const [key, value] of Object.entries(detail)) {
      const tr = table.insertRow();
      const th = document.createElement('th');
      th.scope = 'row';
      th.textContent = key;
      tr.appendChild(th);
      tr.insertCell().textContent = value === null || value === undefined ? '—' : typeof value === 'object' ? JSON.stringify(value) : String(value);
    }
    return table;
  }

  function addRow(entry) {
    const at = typeof entry.at === 'number' ? entry.at : Date.now();
    if (timelineOrigin === null) timelineOrigin = at;
    else if (at < timelineOrigin) moveOrigin(at);
    const kind = BADGES[entry.kind] ? entry.kind : 'info';
    const atBottom = el.scroller.scrollHeight - el.scroller.scrollTop - el.scroller.clientHeight < 40;

    const li = document.createElement('li');
    li.className = `row row-${kind}`;
    li.dataset.kind = kind;
    li.dataset.at = String(at);
    if (entry.wacid) li.dataset.wacid = entry.wacid;
    const time = document.createElement('time');
    time.dateTime = new Date(at).toISOString();
    time.title = new Date(at).toLocaleString() + ` (${time.dateTime})`;
    time.textContent = relativeTime(at);
    const badge = document.createElement('span');
    badge.className = `badge badge-${kind}`;
    badge.textContent = BADGES[kind];
    const title = document.createElement('span');
    title.className = 'row-title';
    title.textContent = entry.title || '';
    li.append(time, badge, title);
    if (entry.wacid) {
      const chip = document.createElement('span');
      chip.className = 'wacid';
      chip.title = entry.wacid;
      chip.textContent = entry.wacid; // full id (searchable); CSS shows its tail
      li.appendChild(chip);
    }
    const detail = entry.detail;
    if (detail !== undefined && detail !== null && !(typeof detail === 'object' && Object.keys(detail).length === 0)) {
      const details = document.createElement('details');
      const summary = document.createElement('summary');
      if (kind === 'cdr' && typeof detail === 'object') {
        // The CDR is the call's final record: shown open as a summary, the raw row folded under it.
        details.open = true;
        summary.textContent = 'call detail record';
        const raw = document.createElement('details');
        raw.className = 'cdr-raw';
        const rawSummary = document.createElement('summary');
        rawSummary.textContent = 'the row as stored (calls table)';
        raw.append(rawSummary, cdrTable(detail));
        details.append(summary, cdrSummary(detail), raw);
      } else {
        summary.textContent = 'details';
        const pre = document.createElement('pre');
        pre.textContent = typeof detail === 'string' ? detail : JSON.stringify(detail, null, 2);
        details.append(summary, pre);
      }
      li.appendChild(details);
    }
    // In time order: a row can come late (a CDR event's time is when it happened, not when it was sent).
    el.timeline.insertBefore(li, rowAfter(at));
    while (el.timeline.childElementCount > MAX_TIMELINE_ROWS) el.timeline.firstElementChild.remove();
    document.body.classList.add('has-rows');
    // Follow the newest row unless the user scrolled up to read something.
    if (atBottom) el.scroller.scrollTop = el.scroller.scrollHeight;
    else el.jump.hidden = false;
  }

  /**
   * The server replays its recent timeline to every new connection, so an EventSource reconnect would
   * repeat rows: server rows already shown are skipped.
   */
  const serverRowsSeen = new Set();
  function addServerRow(entry) {
    const key = JSON.stringify([entry.at, entry.kind, entry.title, entry.wacid || null]);
    if (serverRowsSeen.has(key)) return;
    if (serverRowsSeen.size > 10000) serverRowsSeen.clear();
    serverRowsSeen.add(key);
    addRow(entry);
  }

  el.scroller.addEventListener('scroll', () => {
    if (el.scroller.scrollHeight - el.scroller.scrollTop - el.scroller.clientHeight < 40) el.jump.hidden = true;
  });
  el.jump.addEventListener('click', () => { el.scroller.scrollTop = el.scroller.scrollHeight; el.jump.hidden = true; });
  $('clear-timeline').addEventListener('click', () => {
    el.timeline.replaceChildren();
    document.body.classList.remove('has-rows');
    el.jump.hidden = true;
  });

  // ---------------------------------------------------------------- server events

  function onHello(d) {
    hooks.hello = d;
    business = { name: d.businessName || 'Demo Business', number: d.businessNumber || '' };
    document.querySelectorAll('[data-business-name]').forEach((n) => { n.textContent = business.name; });
    document.querySelectorAll('[data-business-number]').forEach((n) => { n.textContent = formatNumber(business.number); });
    document.querySelectorAll('[data-initials]').forEach((n) => { n.textContent = initials(business.name); });
    el.userNumber.textContent = formatNumber(d.userNumber) || 'unknown';
    el.pbx.textContent = d.pbx ? `PBX: ${d.pbx}` : '';
    if (hooks.state === 'idle' && !hooks.lastError) setStatus('Ready');
  }

  /** answer / accepted / ended for the call in progress. */
  function handleCallEvent(name, d) {
    const c = call;
    if (!c || c.over) return;
    if (!c.wacid) {
      // Our POST /calls has not returned yet: keep the event until we know our wacid.
      if (c.direction === 'out') { c.early.push({ name, data: d }); if (c.early.length > 20) c.early.shift(); }
      return;
    }
    if (d.wacid !== c.wacid) return;
    if (name === 'answer') {
      // The bridge may send its answer twice (pre-accept, then accept); an answer can only be applied once.
      if (c.direction !== 'out' || !c.pc) return;
      if (c.answerSdp !== null) {
        if (d.sdp !== c.answerSdp) addRow({ at: Date.now(), kind: 'phone', title: `Ignored a second, different answer (${d.stage})`, wacid: c.wacid });
        return;
      }
      c.answerSdp = d.sdp;
      c.pc.setRemoteDescription({ type: 'answer', sdp: d.sdp })
        .then(() => addRow({ at: Date.now(), kind: 'phone', title: `Applied the bridge's answer (${d.stage})`, wacid: c.wacid }))
        .catch((err) => fail('Applying the answer failed', err));
    } else if (name === 'accepted') {
      if (c.direction === 'out') connected(c);
    } else if (name === 'ended') {
      const who = { business: 'the business', user: 'you', whatsapp: 'WhatsApp' }[d.by] || d.by || 'the other side';
      endCall(c, d.reason ? `Call ended — ${d.reason}` : `Call ended by ${who}`);
    }
  }

  function connectEvents() {
    const source = new EventSource('/sandbox/events');
    const sseText = el.sse.querySelector('.sse-text');
    function sseState(state, text) {
      el.sse.dataset.sse = state;
      sseText.textContent = text;
      document.querySelectorAll('.statusbar .sse-dot').forEach((d) => { d.dataset.sse = state; });
    }
    function on(name, handler) {
      source.addEventListener(name, (ev) => {
        let data;
        try { data = JSON.parse(ev.data); } catch { console.warn('[sandbox phone] bad SSE data', name, ev.data); return; }
        try { handler(data); } catch (err) { fail(`Handling ${name}`, err); }
      });
    }
    source.addEventListener('open', () => sseState('open', 'live'));
    source.addEventListener('error', () => {
      // EventSource reconnects by itself while readyState is CONNECTING.
      if (source.readyState === EventSource.CLOSED) sseState('closed', 'disconnected');
      else sseState('connecting', 'reconnecting…');
    });
    on('hello', onHello);
    on('timeline', addServerRow);
    on('incoming', onIncoming);
    on('permission-request', onPermissionRequest);
    on('permission-answered', onPermissionAnswered);
    on('answer', (d) => handleCallEvent('answer', d));
    on('accepted', (d) => handleCallEvent('accepted', d));
    on('ended', (d) => handleCallEvent('ended', d));
  }

  // ---------------------------------------------------------------- wiring

  $('call-business').addEventListener('click', () => { callBusiness(); });
  $('accept').addEventListener('click', () => { acceptIncoming(); });
  $('decline').addEventListener('click', declineIncoming);
  $('hangup').addEventListener('click', () => hangUp(false));
  el.mute.addEventListener('click', () => { if (call && !call.over) setMuted(call, !call.muted); });
  el.keypadToggle.addEventListener('click', () => showKeypad(el.keypad.hidden));
  el.keypad.addEventListener('click', (ev) => {
    const key = ev.target.closest('button[data-digit]');
    if (key) pressKey(key.dataset.digit);
  });
  el.permission.addEventListener('click', (ev) => {
    const btn = ev.target.closest('button[data-choice]');
    if (btn) answerPermission(btn.dataset.choice);
  });

  function tickClock() {
    const now = new Date();
    el.clock.textContent = `${String(now.getHours()).padStart(2, '0')}:${String(now.getMinutes()).padStart(2, '0')}`;
  }
  tickClock();
  setInterval(tickClock, 10000);
  window.addEventListener('pagehide', () => { hangUp(true); });

  setState('idle');
  connectEvents();
})();
