// Heaters sprite geometry, shared by the review player (review.js) and the search page's hover
// thumbnails (search.js): which sprite shows a source frame. No dependencies.
(function () {
  "use strict";

  // "30000/1001" (or "25") as [numerator, denominator]
  function frac(text) {
    const parts = String(text).split("/");
    return [Number(parts[0]), parts.length > 1 ? Number(parts[1]) : 1];
  }

  // The sprite of source frame f: k = min(floor(f * sprite_fps / source_fps), sprite_count - 1),
  // in exact integer arithmetic.
  function spriteIndex(sprite, frame) {
    const [sn, sd] = frac(sprite.sprite_fps);
    const [fn, fd] = frac(sprite.source_fps);
    const num = frame * sn * fd;
    const den = sd * fn;
    return Math.min((num - (num % den)) / den, sprite.sprite_count - 1);
  }

  window.heatersSprites = { frac, spriteIndex };
})();
