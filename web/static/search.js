// Heaters similarity search: sprite thumbnails play their clip while hovered (or focused).
// Needs sprites.js (loaded before it).
// The geometry comes from each thumbnail's data-play attribute (server JSON).
(function () {
  "use strict";

  const { frac, spriteIndex } = window.heatersSprites;

  function show(el, sp, k) {
    const z = sp.width / sp.tile_width;
    const sheet = Math.floor(k / sp.per_sheet);
    const slot = k % sp.per_sheet;
    const col = slot % sp.columns;
    const row = Math.floor(slot / sp.columns);
    el.style.backgroundImage = 'url("' + sp.sheets[sheet] + '")';
    el.style.backgroundSize =
      Math.round(sp.columns * sp.tile_width * z) + "px " + Math.round(sp.rows * sp.tile_height * z) + "px";
    el.style.backgroundPosition =
      -Math.round(col * sp.tile_width * z) + "px " + -Math.round(row * sp.tile_height * z) + "px";
    el.dataset.sprite = String(k);
  }

  function setUp(el) {
    let sp;
    try {
      sp = JSON.parse(el.dataset.play);
    } catch (e) {
      return;
    }
    if (!sp || !sp.sheets || !sp.sheets.length || sp.end <= sp.start) return;
    const first = spriteIndex(sp, sp.start);
    const last = Math.max(first, spriteIndex(sp, sp.end - 1));
    const [sn, sd] = frac(sp.sprite_fps);
    const interval = Math.max(1000 / 30, (1000 * sd) / sn); // one sprite per sprite period, at most 30/s
    const resting = el.getAttribute("style");
    let timer = 0;
    let preloaded = false;

    function start() {
      if (timer) return;
      if (!preloaded) {
        // sheets of this clip only, so the first loop does not flicker
        const sheets = new Set();
        for (let k = first; k <= last; k += sp.per_sheet) sheets.add(Math.floor(k / sp.per_sheet));
        sheets.add(Math.floor(last / sp.per_sheet));
        for (const s of sheets) new Image().src = sp.sheets[s];
        preloaded = true;
      }
      let k = first;
      show(el, sp, k);
      el.classList.add("playing");
      timer = setInterval(() => {
        k = k >= last ? first : k + 1;
        show(el, sp, k);
      }, interval);
    }

    function stop() {
      if (!timer) return;
      clearInterval(timer);
      timer = 0;
      el.classList.remove("playing");
      el.setAttribute("style", resting);
      delete el.dataset.sprite;
    }

    const host = el.closest(".card") || el;
    host.addEventListener("mouseenter", start);
    host.addEventListener("mouseleave", stop);
    host.addEventListener("focus", start);
    host.addEventListener("blur", stop);
  }

  for (const el of document.querySelectorAll(".thumb.playable[data-play]")) setUp(el);
})();
