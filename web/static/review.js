// Heaters review page: a sprite-sheet scrubber player and keyboard-first review actions.
// Needs sprites.js (loaded before it).
// Everything user-provided is written with textContent, never innerHTML.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const csrf = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  const initial = JSON.parse($("initial-data").textContent);
  const root = $("review");
  const ACTION_KEYS = { a: "approve", s: "skip", d: "archive", f: "merge", g: "group" };
  // Clips held ahead (leased to this reviewer); the server leases at most 10 per reviewer.
  const QUEUE_SIZE = Math.max(1, Math.min(10, Number(root.dataset.prefetch || 6)));
  const LEASE_SECONDS = Number(root.dataset.leaseSeconds || 45);
  const IDLE_LIMIT_MS = 15 * 60 * 1000; // an idle tab stops its heartbeat: its clips go to others

  const state = {
    queue: initial.clips || [], // queue[0] is the clip on screen
    frame: 0,
    playing: false,
    speed: 1,
    t0: 0,
    f0: 0,
    raf: 0,
    split: false,
    repeat: 0,
    held: new Set(),
    chain: Promise.resolve(),
    inflight: new Set(), // clips whose decision request is on its way
    settled: new Set(), // clips decided in this tab: never shown again (unless undone)
    busy: "", // a split, merge or group by id in flight: the screen waits for its answer
    refilling: false,
    refillAgain: false,
    idMode: false,
    lastActivity: Date.now(),
    images: new Map(),
    sheetQueue: [],
    sheetsLoading: 0,
  };

  // -- small helpers -------------------------------------------------------------------------------

  const { frac, spriteIndex } = window.heatersSprites;

  function shortId(id) {
    return String(id).slice(0, 8);
  }

  function label(clip) {
    return "clip " + (clip.index + 1) + " of " + clip.clip_count + " · " + (clip.video_title || "(untitled)");
  }

  function flash(message, kind) {
    const el = $("flash");
    el.textContent = message;
    el.className = "flash " + (kind || "ok");
    clearTimeout(flash.timer);
    flash.timer = setTimeout(() => el.classList.add("hidden"), kind === "err" ? 6000 : 2000);
  }

  async function api(method, url, body) {
    const options = { method, headers: { "x-csrftoken": csrf, accept: "application/json" } };
    if (body !== undefined) {
      options.headers["content-type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    if (response.status === 401) {
      window.location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
      throw new Error("log in again");
    }
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
    if (!response.ok) {
      const error = new Error((data && data.error) || "request failed (" + response.status + ")");
      error.status = response.status;
      error.data = data || {};
      throw error;
    }
    if (data && data.caught_up === false) {
      // Saved, but the read models lag: keep the server's warning up longer than a plain "ok".
      setTimeout(() => flash(data.message, "err"), 0);
    }
    return data;
  }

  function setPending(n) {
    const badge = $("pending-badge");
    if (badge && typeof n === "number") badge.textContent = String(n);
  }

  // -- player --------------------------------------------------------------------------------------

  function current() {
    return state.queue[0] || null;
  }

  // Sheets load in the order the reviewer needs them, SHEETS_IN_FLIGHT at a time: the sheet of each
  // queued clip's first frame (the current clip's first of all), then the rest of each clip in order.
  // Requested all at once they shared the link, and the first frame waited for every sheet.
  const SHEETS_IN_FLIGHT = 2;

  function clipSheets(clip) {
    if (!clip || !clip.sprite) return [];
    const first = Math.floor(spriteIndex(clip.sprite, clip.start_frame) / clip.sprite.per_sheet);
    const last = Math.floor(spriteIndex(clip.sprite, Math.max(clip.start_frame, clip.end_frame - 1)) / clip.sprite.per_sheet);
    const urls = [];
    for (let s = first; s <= last; s++) if (clip.sprite.sheets[s]) urls.push(clip.sprite.sheets[s]);
    return urls;
  }

  function prefetch(clips) {
    const lists = clips.map(clipSheets);
    const ordered = [...lists.map((urls) => urls[0]), ...lists.flatMap((urls) => urls.slice(1))];
    state.sheetQueue = ordered.filter((url, i) => url && !state.images.has(url) && ordered.indexOf(url) === i);
    loadSheets();
  }

  function loadSheets() {
    if (state.images.size > 200) state.images.clear();
    while (state.sheetsLoading < SHEETS_IN_FLIGHT && state.sheetQueue.length) {
      const url = state.sheetQueue.shift();
      if (state.images.has(url)) continue;
      const img = new Image();
      img.decoding = "async";
      const done = () => {
        state.sheetsLoading -= 1;
        loadSheets();
      };
      img.onload = done;
      img.onerror = done;
      state.sheetsLoading += 1;
      img.src = url;
      state.images.set(url, img);
    }
  }

  function scale(sprite) {
    const maxWidth = Math.min(960, root.clientWidth || 960);
    // Tiles are rendered at the size the player shows them (HEATERS_SPRITE_TILE_WIDTH): never upscale.
    return Math.min(1, maxWidth / sprite.tile_width);
  }

  function draw() {
    const clip = current();
    const player = $("player");
    if (!clip) return;
    const length = clip.end_frame - clip.start_frame;
    $("frame-counter").textContent =
      "frame " + (state.frame - clip.start_frame + 1) + " / " + length + " · source " + state.frame;
    $("scrub").value = String(state.frame);
    if (!clip.sprite) {
      player.textContent = "no sprites for this clip";
      player.style.backgroundImage = "none";
      return;
    }
    player.textContent = "";
    const sp = clip.sprite;
    const k = spriteIndex(sp, state.frame);
    const sheet = Math.floor(k / sp.per_sheet);
    const slot = k % sp.per_sheet;
    const col = slot % sp.columns;
    const row = Math.floor(slot / sp.columns);
    const z = scale(sp);
    player.style.width = Math.round(sp.tile_width * z) + "px";
    player.style.height = Math.round(sp.tile_height * z) + "px";
    player.style.backgroundImage = 'url("' + sp.sheets[sheet] + '")';
    player.style.backgroundSize = Math.round(sp.columns * sp.tile_width * z) + "px " + Math.round(sp.rows * sp.tile_height * z) + "px";
    player.style.backgroundPosition = -Math.round(col * sp.tile_width * z) + "px " + -Math.round(row * sp.tile_height * z) + "px";
    player.dataset.sheet = String(sheet);
    player.dataset.sprite = String(k);
    player.dataset.frame = String(state.frame);
  }

  function seek(frame) {
    const clip = current();
    if (!clip) return;
    state.frame = Math.max(clip.start_frame, Math.min(clip.end_frame - 1, frame));
    if (state.playing) {
      state.t0 = performance.now();
      state.f0 = state.frame;
    }
    draw();
  }

  function tick(now) {
    const clip = current();
    if (!state.playing || !clip) return;
    const [fn, fd] = frac(clip.sprite ? clip.sprite.source_fps : clip.fps || 25);
    const length = clip.end_frame - clip.start_frame;
    const elapsed = ((now - state.t0) / 1000) * state.speed;
    const offset = Math.floor((elapsed * fn) / fd) + (state.f0 - clip.start_frame);
    state.frame = clip.start_frame + (offset % length);
    draw();
    state.raf = requestAnimationFrame(tick);
  }

  function play(on) {
    state.playing = on;
    $("play").textContent = on ? "Pause" : "Play";
    cancelAnimationFrame(state.raf);
    if (on) {
      leaveSplit();
      state.t0 = performance.now();
      state.f0 = state.frame;
      state.raf = requestAnimationFrame(tick);
    }
  }

  function setSpeed(speed) {
    state.speed = speed;
    for (const b of document.querySelectorAll(".speed")) {
      b.classList.toggle("active", Number(b.dataset.speed) === speed);
    }
    if (state.playing) play(true);
  }

  // -- showing a clip ------------------------------------------------------------------------------

  function show() {
    const clip = current();
    play(false);
    leaveSplit();
    closeIdMode();
    const waiting = !clip && (state.inflight.size > 0 || state.busy !== "" || state.refilling);
    $("done").classList.toggle("hidden", !!clip || waiting);
    $("waiting").classList.toggle("hidden", !waiting);
    $("reviewer").classList.toggle("hidden", !clip);
    if (!clip) {
      delete root.dataset.clip;
      history.replaceState(null, "", "/review");
      return;
    }
    $("clip-title").textContent = clip.video_title || "(untitled)";
    $("clip-pos").textContent = "clip " + (clip.index + 1) + " of " + clip.clip_count + " · frames " + clip.start_frame + "-" + clip.end_frame;
    const groups = clip.grouped_with || [];
    $("clip-state").textContent = clip.state + (groups.length ? " · grouped with clip " + groups.map(shortId).join(", ") : "");
    $("clip-link").textContent = clip.id;
    $("clip-link").href = "/review?clip=" + encodeURIComponent(clip.id);
    $("clip-history").href = "/clips/" + encodeURIComponent(clip.id) + "/history";
    const warning = $("lease-warning");
    if (clip.gone) {
      warning.textContent = "Clip " + shortId(clip.id) + " is no longer yours to review (" + clip.gone +
        "). Any action key moves on to the next clip without sending anything.";
      warning.classList.remove("hidden");
    } else if (clip.leased_by) {
      warning.textContent = "Clip " + shortId(clip.id) + " is open on " + clip.leased_by + "'s screen right now.";
      warning.classList.remove("hidden");
    } else if (clip.state !== "pending_review" && clip.state !== "skipped") {
      warning.textContent = "This clip is " + clip.state + " (not awaiting review): see its history.";
      warning.classList.remove("hidden");
    } else {
      warning.classList.add("hidden");
    }
    const scrub = $("scrub");
    scrub.min = String(clip.start_frame);
    scrub.max = String(clip.end_frame - 1);
    state.frame = clip.start_frame;
    history.replaceState(null, "", "/review?clip=" + encodeURIComponent(clip.id));
    root.dataset.clip = clip.id;
    prefetch(state.queue);
    draw();
    clearTimeout(show.beat);
    show.beat = setTimeout(heartbeat, 300); // tells the server this clip is on screen
  }

  // -- split mode ----------------------------------------------------------------------------------

  function enterSplit() {
    if (!current()) return;
    play(false);
    state.split = true;
    $("split-marker").classList.remove("hidden");
    root.classList.add("splitting");
  }

  function leaveSplit() {
    state.split = false;
    state.repeat = 0;
    $("split-marker").classList.add("hidden");
    root.classList.remove("splitting");
  }

  function step(direction, repeat) {
    if (!state.split) enterSplit();
    state.repeat = repeat ? state.repeat + 1 : 0;
    const size = Math.min(16, 1 << Math.floor(state.repeat / 3)); // 1, 2, 4, 8, 16 while held
    seek(state.frame + direction * size);
  }

  // -- ID mode -------------------------------------------------------------------------------------

  async function openIdMode() {
    const clip = current();
    if (!clip) return;
    play(false);
    state.idMode = true;
    $("id-mode").classList.remove("hidden");
    const grid = $("siblings");
    grid.textContent = "loading…";
    try {
      const data = await api("GET", "/api/clips/" + encodeURIComponent(clip.id) + "/siblings");
      grid.textContent = "";
      for (const s of data.clips) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "sibling" + (s.id === clip.id ? " self" : "");
        button.dataset.id = s.id;
        const thumb = document.createElement("div");
        thumb.className = "thumb";
        if (s.thumb_style) thumb.setAttribute("style", s.thumb_style);
        const label = document.createElement("div");
        label.className = "small";
        label.textContent = "#" + (s.index + 1) + " · " + s.start_frame + "–" + s.end_frame + " · " + s.state;
        const ident = document.createElement("div");
        ident.className = "mono tiny";
        ident.textContent = s.id;
        button.append(thumb, label, ident);
        button.disabled = s.id === clip.id;
        button.addEventListener("click", () => {
          $("target-id").value = s.id;
          for (const b of grid.querySelectorAll(".sibling")) b.classList.toggle("chosen", b === button);
          button.blur();
        });
        grid.append(button);
      }
    } catch (error) {
      grid.textContent = error.message;
    }
  }

  function closeIdMode() {
    state.idMode = false;
    $("id-mode").classList.add("hidden");
  }

  // -- actions -------------------------------------------------------------------------------------
  // A key acts on the clip on screen when it is pressed: its id (and the version shown) go with the
  // request, and nothing the server answers later puts another clip under the reviewer's keys.

  function run(task) {
    state.chain = state.chain.then(task).catch((error) => flash(error.message, "err"));
    return state.chain;
  }

  function dropGone(ids) {
    // clips behind the one on screen leave the queue; the one on screen stays, marked, until a key moves on
    const gone = new Set(ids);
    if (!gone.size) return;
    state.queue = state.queue.filter((c, i) => i === 0 || !gone.has(c.id));
    const shown = current();
    if (shown && gone.has(shown.id) && !shown.gone) {
      shown.gone = "decided elsewhere, or opened by another reviewer";
      show();
    }
  }

  async function refill() {
    if (state.refilling) {
      state.refillAgain = true;
      return;
    }
    state.refilling = true;
    try {
      do {
        state.refillAgain = false;
        const held = state.queue.map((c) => c.id).concat([...state.inflight]);
        const want = QUEUE_SIZE - state.queue.length;
        if (want <= 0) break;
        const last = state.queue[state.queue.length - 1] || state.lastShown;
        let url = "/api/review/next?count=" + Math.min(10, want);
        if (held.length) url += "&exclude=" + held.join(",");
        if (last) url += "&after=" + encodeURIComponent(last.id);
        const data = await api("GET", url);
        setPending(data.pending);
        dropGone(data.gone || []);
        const have = new Set(state.queue.map((c) => c.id));
        const hadClip = !!current();
        for (const c of data.clips) {
          // an answer never brings back a clip decided here or on its way, except a skipped clip coming
          // back after the rest
          if (have.has(c.id) || state.inflight.has(c.id)) continue;
          if (state.settled.has(c.id) && c.state !== "skipped") continue;
          state.queue.push(c);
          have.add(c.id);
        }
        if (!hadClip) show();
        else prefetch(state.queue);
      } while (state.refillAgain);
    } catch (error) {
      flash(error.message, "err");
    } finally {
      state.refilling = false;
      if (!current()) show();
    }
  }

  async function fetchViews(ids) {
    const views = [];
    for (const id of ids) views.push(await api("GET", "/api/clips/" + encodeURIComponent(id)));
    return views;
  }

  function moveOn(clip) {
    state.settled.add(clip.id);
    state.lastShown = clip;
    state.queue.shift();
    show();
  }

  function act(action, target) {
    const clip = current();
    if (state.busy) {
      flash("Wait: the " + state.busy + " is being saved", "err");
      return;
    }
    if (!clip) {
      flash(state.inflight.size ? "Saving your decisions… the next clip comes in a moment" : "No clip to review", "err");
      return;
    }
    if (clip.gone) {
      moveOn(clip); // nothing is sent for a clip that is no longer ours
      refill();
      return;
    }
    const id = clip.id;
    const seen = clip.version;
    const where = label(clip);
    const url = "/api/clips/" + encodeURIComponent(id) + "/" + action;
    if (action === "approve" || action === "skip" || action === "archive" || (action === "group" && !target)) {
      // optimistic: the next clip (already prefetched) shows at once
      state.inflight.add(id);
      moveOn(clip);
      if (state.queue.length < QUEUE_SIZE / 2) refill();
      run(async () => {
        try {
          const result = await api("POST", url, { seen });
          setPending(result.pending);
          flash(result.message + " · " + where, "ok");
        } catch (error) {
          // Nothing was stored. The clip is not put back under the reviewer's keys; unless someone else
          // decided it, it may come back at the end of the queue.
          const state_ = error.data && error.data.state;
          if (error.status !== 409 || state_ === "pending_review" || state_ === "skipped") state.settled.delete(id);
          throw new Error(error.message + " · " + where);
        } finally {
          state.inflight.delete(id);
        }
        refill();
      });
      return;
    }
    state.busy = action;
    run(async () => {
      let body = { seen };
      if (action === "split") body = { frame: state.frame, seen };
      if (action === "merge" || action === "group") body = target ? { with_clip_id: target, seen } : { seen };
      let result;
      try {
        result = await api("POST", url, body);
      } catch (error) {
        state.busy = "";
        if (error.status === 409 && error.data.clip_id === id && current() && current().id === id) {
          current().gone = error.data.state || "changed";
          show();
        }
        throw new Error(error.message + " · " + where);
      }
      state.settled.add(id);
      setPending(result.pending);
      flash(result.message + " · " + where, "ok");
      const removed = new Set([id, ...(result.removed_clip_ids || [])]);
      removed.forEach((c) => state.settled.add(c));
      const front = await fetchViews(result.new_clip_ids || []).finally(() => (state.busy = ""));
      const ids = new Set(front.map((c) => c.id));
      state.queue = [...front, ...state.queue.filter((c) => !removed.has(c.id) && !ids.has(c.id))];
      show();
      refill();
    });
  }

  function undo() {
    if (state.busy) {
      flash("Wait: the " + state.busy + " is being saved", "err");
      return;
    }
    run(async () => {
      // the undo stack is the reviewer's, kept on the server: every tab undoes the same history
      const result = await api("POST", "/api/review/undo");
      setPending(result.pending);
      flash(result.message, "ok");
      const back = result.new_clip_ids || [];
      back.forEach((id) => state.settled.delete(id));
      const removed = new Set(result.removed_clip_ids || []);
      removed.forEach((id) => state.settled.add(id));
      state.queue = state.queue.filter((c) => !removed.has(c.id));
      const front = (await fetchViews(back)).filter(
        (c) => c.live && (c.state === "pending_review" || c.state === "skipped"),
      );
      const ids = new Set(front.map((c) => c.id));
      state.queue = [...front, ...state.queue.filter((c) => !ids.has(c.id))];
      show();
      refill();
    });
  }

  // -- keyboard ------------------------------------------------------------------------------------

  function typing(event) {
    const t = event.target;
    if (!t) return false;
    if (t.tagName === "INPUT") return t.type !== "range"; // the scrubber keeps the hotkeys
    return t.tagName === "TEXTAREA" || t.tagName === "SELECT";
  }

  document.addEventListener("keydown", (event) => {
    state.lastActivity = Date.now();
    const key = event.key;
    if ((event.ctrlKey || event.metaKey) && key.toLowerCase() === "z") {
      event.preventDefault();
      undo();
      return;
    }
    if (key === "Escape") {
      leaveSplit();
      closeIdMode();
      if (typing(event)) event.target.blur();
      return;
    }
    if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
    const lower = key.length === 1 ? key.toLowerCase() : key;
    if (ACTION_KEYS[lower]) {
      state.held.add(lower);
      event.preventDefault();
      return;
    }
    if (key === " " || key === "Spacebar") {
      event.preventDefault();
      if (event.shiftKey) {
        if (state.idMode) closeIdMode();
        else openIdMode();
      } else {
        play(!state.playing);
      }
      return;
    }
    if (key === "ArrowLeft" || key === "ArrowRight") {
      event.preventDefault();
      step(key === "ArrowLeft" ? -1 : 1, event.repeat);
      return;
    }
    if (key === "Enter") {
      event.preventDefault();
      if (event.repeat) return;
      const held = [...state.held];
      if (held.length === 1) {
        const action = ACTION_KEYS[held[0]];
        if (state.idMode && (action === "merge" || action === "group")) {
          const target = $("target-id").value.trim();
          if (!target) flash("Pick a target clip first", "err");
          else act(action, target);
        } else {
          act(action);
        }
      } else if (held.length > 1) {
        flash("Hold only one of A/S/D/F/G", "err");
      } else if (state.split) {
        act("split");
      }
    }
  });

  document.addEventListener("keyup", (event) => {
    const lower = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    state.held.delete(lower);
    if (event.key === "ArrowLeft" || event.key === "ArrowRight") state.repeat = 0;
  });
  window.addEventListener("blur", () => state.held.clear());

  // -- mouse ---------------------------------------------------------------------------------------

  $("player").addEventListener("click", () => play(!state.playing));
  $("play").addEventListener("click", () => play(!state.playing));
  $("scrub").addEventListener("input", (e) => {
    play(false);
    seek(Number(e.target.value));
  });
  for (const b of document.querySelectorAll(".speed")) {
    b.addEventListener("click", () => setSpeed(Number(b.dataset.speed)));
  }
  for (const b of document.querySelectorAll("[data-action]")) {
    b.addEventListener("click", () => {
      const action = b.dataset.action;
      if (action === "undo") undo();
      else if (action === "merge-id" || action === "group-id") {
        const target = $("target-id").value.trim();
        if (!target) flash("Pick a target clip first", "err");
        else act(action.split("-")[0], target);
      } else act(action);
      b.blur();
    });
  }
  $("id-mode-button").addEventListener("click", () => (state.idMode ? closeIdMode() : openIdMode()));

  // -- leases: a heartbeat while the tab is open, released when it goes away -----------------------

  function heartbeat() {
    if (document.visibilityState !== "visible" || Date.now() - state.lastActivity > IDLE_LIMIT_MS) return;
    const clip = current();
    api("POST", "/api/review/leases/renew", { shown: clip ? clip.id : null }).catch(() => {});
  }

  document.addEventListener("mousemove", () => (state.lastActivity = Date.now()), { passive: true });
  // three beats per lease time, so a lease never lapses between two beats however short it is
  setInterval(heartbeat, Math.max(1, LEASE_SECONDS / 3) * 1000);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") {
      state.lastActivity = Date.now();
      heartbeat();
      refill();
    }
  });
  window.addEventListener("pagehide", () => {
    const ids = state.queue.map((c) => c.id);
    if (!ids.length) return;
    const body = new URLSearchParams({ _csrf_token: csrf, clips: ids.join(",") });
    navigator.sendBeacon("/api/review/leases/release", body);
  });
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) window.location.reload(); // back from the page cache: its leases were released
  });

  setPending(initial.pending);
  show();
  window.heatersReview = { state, spriteIndex }; // for tests and debugging
})();
