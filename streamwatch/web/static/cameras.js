// refresh the latest frames every 5 s (a file of its own: the pages allow no inline scripts)
setInterval(() => document.querySelectorAll("img.live").forEach(img => { img.src = img.dataset.src + "?t=" + Date.now(); }), 5000);
