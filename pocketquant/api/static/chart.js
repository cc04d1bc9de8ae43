// PocketQuant's chart page: search a symbol, draw its stored bars (the columnar `bars`
// query, older pages loaded as you scroll left), move the newest candle with `liveBars`
// over graphql-transport-ws, and sync or watch the symbol. Everything it loads comes from
// this server. `window.pq` exposes the page's state (the browser tests read it).
(function () {
  "use strict";
  const PAGE = 500;
  const $ = (id) => document.getElementById(id);
  const state = (window.pq = {
    ticker: null, interval: $("interval").value, bars: 0, hasOlder: false, cursor: null, loading: false,
    lastBar: null, closedBars: 0, connection: "connecting", error: null, searchResults: [],
  });

  // -- GraphQL over HTTP -------------------------------------------------------------------
  const apiKey = () => window.localStorage.getItem("pocketquant.apiKey") || "";
  async function gql(query, variables) {
    const headers = { "Content-Type": "application/json" };
    if (apiKey()) headers.Authorization = "Bearer " + apiKey();
    let response;
    try {
      response = await fetch("/graphql", { method: "POST", headers, body: JSON.stringify({ query, variables }) });
    } catch (e) {
      throw new Error("the server cannot be reached");
    }
    let body;
    try { body = await response.json(); } catch (e) { throw new Error("HTTP " + response.status); }
    if (body.errors && body.errors.length) {
      const error = body.errors[0];
      const code = error.extensions && error.extensions.code;
      throw new Error((code ? code + ": " : "") + error.message);
    }
    return body.data;
  }

  function setState(kind, text) {
    $("state").dataset.state = kind;
    $("state").textContent = text;
    state.error = kind === "error" ? text : null;
  }

  // -- the chart ---------------------------------------------------------------------------
  const LC = window.LightweightCharts;
  const chart = LC.createChart($("chart"), {
    autoSize: true,
    layout: { background: { color: "#101418" }, textColor: "#d8dee6" },
    grid: { vertLines: { color: "#1c232b" }, horzLines: { color: "#1c232b" } },
    timeScale: { timeVisible: true, secondsVisible: false },
  });
  const candles = chart.addSeries(LC.CandlestickSeries, {
    upColor: "#3fb950", downColor: "#f85149", borderVisible: false, wickUpColor: "#3fb950", wickDownColor: "#f85149",
  });
  const volume = chart.addSeries(LC.HistogramSeries, { priceScaleId: "", priceFormat: { type: "volume" } });
  volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  state.chart = chart;
  let data = []; // ascending bars: {time, open, high, low, close, volume}

  const volumeOf = (b) => ({ time: b.time, value: b.volume, color: b.close >= b.open ? "#2e7d4f88" : "#a2383388" });
  function draw() {
    candles.setData(data.map((b) => ({ time: b.time, open: b.open, high: b.high, low: b.low, close: b.close })));
    volume.setData(data.map(volumeOf));
    state.bars = data.length;
  }

  const BARS = `query($e: String!, $s: String!, $i: Interval!, $first: Int!, $after: String) {
    bars(exchange: $e, symbol: $s, interval: $i, first: $first, after: $after, order: NEWEST_FIRST) {
      hasNextPage endCursor source columns { t o h l c v } } }`;

  function rows(columns) {
    const out = [];
    for (let i = columns.t.length - 1; i >= 0; i--) {
      out.push({ time: columns.t[i], open: columns.o[i], high: columns.h[i], low: columns.l[i], close: columns.c[i], volume: columns.v[i] });
    }
    return out;
  }

  async function loadBars() {
    const [exchange, symbol] = split(state.ticker);
    setState("loading", "Loading " + state.ticker + "…");
    state.loading = true;
    try {
      const page = (await gql(BARS, { e: exchange, s: symbol, i: state.interval, first: PAGE })).bars;
      data = rows(page.columns);
      state.hasOlder = page.hasNextPage;
      state.cursor = page.endCursor;
      draw();
      if (data.length) chart.timeScale().setVisibleLogicalRange({ from: Math.max(0, data.length - 150), to: data.length + 5 });
      if (!data.length) {
        setState("empty", "No " + label() + " bars stored for " + state.ticker + " yet: press Sync to fetch them.");
      } else {
        const from = page.source !== state.interval ? " (resampled from " + page.source + ")" : "";
        setState("ready", data.length + " bars" + from + (state.hasOlder ? "; scroll left for older ones" : ""));
      }
    } catch (e) {
      data = [];
      draw();
      setState("error", "Could not load bars: " + e.message);
    } finally {
      state.loading = false;
    }
  }

  async function loadOlder() {
    if (state.loading || !state.hasOlder || !state.ticker) return;
    const [exchange, symbol] = split(state.ticker);
    state.loading = true;
    try {
      const page = (await gql(BARS, { e: exchange, s: symbol, i: state.interval, first: PAGE, after: state.cursor })).bars;
      const older = rows(page.columns).filter((b) => !data.length || b.time < data[0].time);
      data = older.concat(data);
      state.hasOlder = page.hasNextPage;
      state.cursor = page.endCursor;
      const range = chart.timeScale().getVisibleLogicalRange();
      draw();
      if (range) chart.timeScale().setVisibleLogicalRange({ from: range.from + older.length, to: range.to + older.length });
      setState("ready", data.length + " bars" + (state.hasOlder ? "; scroll left for older ones" : " (all stored bars)"));
    } catch (e) {
      setState("error", "Could not load older bars: " + e.message);
    } finally {
      state.loading = false;
    }
  }
  chart.timeScale().subscribeVisibleLogicalRangeChange((range) => {
    if (range && range.from < 20) loadOlder();
  });

  // -- live bars over graphql-transport-ws --------------------------------------------------
  const ws = graphqlWs.createClient({
    url: new URL("/graphql", window.location.href).toString().replace(/^http/, "ws"),
    connectionParams: () => (apiKey() ? { Authorization: "Bearer " + apiKey() } : {}),
    lazy: false,
    retryAttempts: Infinity,
    shouldRetry: () => true,
    retryWait: async (retries) => new Promise((resolve) => setTimeout(resolve, Math.min(10000, 500 * 2 ** retries))),
    on: {
      connected: () => connection("open", "live: connected"),
      closed: () => connection("closed", "live: connection lost, reconnecting…"),
      connecting: () => connection("connecting", "live: connecting…"),
    },
  });
  function connection(kind, text) {
    state.connection = kind;
    $("connection").dataset.state = kind;
    $("connection").textContent = text;
  }

  let unsubscribe = null;
  const LIVE = `subscription($e: String!, $s: String!, $i: Interval!) {
    liveBars(exchange: $e, symbol: $s, interval: $i) { timestamp open high low close volume ticks partial closed } }`;
  function subscribeLive() {
    if (unsubscribe) unsubscribe();
    unsubscribe = null;
    if (!state.ticker) return;
    const [exchange, symbol] = split(state.ticker);
    const ticker = state.ticker;
    const interval = state.interval;
    unsubscribe = ws.subscribe({ query: LIVE, variables: { e: exchange, s: symbol, i: interval } }, {
      next: (result) => {
        if (ticker !== state.ticker || interval !== state.interval) return;
        if (result.errors) {
          $("live-bar").textContent = "live bars: " + result.errors[0].message;
          return;
        }
        onLiveBar(result.data.liveBars);
      },
      error: (error) => {
        const message = Array.isArray(error) ? error.map((e) => e.message).join("; ") : (error && error.reason) || String(error);
        $("live-bar").textContent = "live bars: " + message;
      },
      complete: () => {},
    });
  }

  function onLiveBar(bar) {
    const point = { time: bar.timestamp, open: bar.open, high: bar.high, low: bar.low, close: bar.close, volume: bar.volume };
    const last = data[data.length - 1];
    if (last && point.time < last.time) return; // older than what is drawn
    if (last && last.time === point.time) data[data.length - 1] = point;
    else data.push(point);
    candles.update(point);
    volume.update(volumeOf(point));
    state.bars = data.length;
    state.lastBar = Object.assign({ closed: bar.closed, partial: bar.partial, ticks: bar.ticks }, point);
    if (bar.closed) state.closedBars += 1;
    $("live-bar").textContent = "live " + label() + " bar: " + bar.close + " (" + bar.ticks + " ticks" +
      (bar.partial ? ", partial" : "") + (bar.closed ? ", closed" : "") + ")";
    if (!data.length || $("state").dataset.state === "empty") setState("ready", data.length + " bars (live)");
  }

  // -- status --------------------------------------------------------------------------------
  async function refreshStatus() {
    if (!state.ticker) return;
    const [exchange, symbol] = split(state.ticker);
    try {
      const d = await gql(`query($e: String!, $s: String!, $i: Interval!) {
        syncStatus(exchange: $e, symbol: $s, interval: $i) { state lastSuccessAt barCount gapCount lastError }
        streamStatus { running connected receivingSymbols } }`, { e: exchange, s: symbol, i: state.interval });
      const sync = d.syncStatus[0];
      $("sync-status").textContent = sync
        ? "sync: " + sync.state.toLowerCase() + ", " + sync.barCount + " bars" + (sync.gapCount ? ", " + sync.gapCount + " gaps" : "") +
          (sync.lastError ? " (" + sync.lastError + ")" : "")
        : "sync: never synced at this interval";
      const s = d.streamStatus;
      const live = s.receivingSymbols.indexOf(state.ticker) >= 0;
      $("stream-status").textContent = "stream: " + (!s.running ? "not running" : live ? "streaming " + state.ticker : "not watching " + state.ticker);
    } catch (e) {
      $("sync-status").textContent = "status unavailable: " + e.message;
    }
  }
  setInterval(refreshStatus, 5000);

  // -- actions -------------------------------------------------------------------------------
  $("sync").addEventListener("click", async () => {
    const [exchange, symbol] = split(state.ticker);
    $("sync").disabled = true;
    setState("loading", "Syncing " + state.ticker + " " + label() + " from TradingView…");
    try {
      const r = (await gql(`mutation($e: String!, $s: String!, $i: Interval!) {
        syncSymbol(input: {exchange: $e, symbol: $s, interval: $i}) { __typename ... on SyncEnqueued { jobId } ... on InvalidInput { message } } }`,
      { e: exchange, s: symbol, i: state.interval })).syncSymbol;
      if (r.__typename !== "SyncEnqueued") throw new Error(r.message);
      for (let i = 0; i < 600; i++) {
        const job = (await gql(`query($id: ID!) { syncJob(id: $id) { state result { ok error } } }`, { id: r.jobId })).syncJob;
        if (job && job.state === "COMPLETE") {
          if (!job.result.ok) throw new Error(job.result.error);
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
      await loadBars();
      refreshStatus();
    } catch (e) {
      setState("error", "Sync failed: " + e.message + (/UNAUTHENTICATED|FORBIDDEN/.test(e.message) ? " (set an API key with the write scope)" : ""));
    } finally {
      $("sync").disabled = false;
    }
  });

  $("watch").addEventListener("click", async () => {
    try {
      const r = (await gql(`mutation($t: [String!]!) { watchSymbols(tickers: $t) { __typename ... on InvalidInput { message } } }`,
        { t: [state.ticker] })).watchSymbols;
      if (r.__typename !== "WatchlistChanged") throw new Error(r.message);
      $("live-bar").textContent = "watching " + state.ticker + ": waiting for trades…";
      subscribeLive();
      refreshStatus();
      setTimeout(refreshStatus, 1500); // the stream picks the symbol up within a second or so
    } catch (e) {
      setState("error", "Watch failed: " + e.message + (/UNAUTHENTICATED|FORBIDDEN/.test(e.message) ? " (set an API key with the write scope)" : ""));
    }
  });

  $("api-key").value = apiKey();
  $("save-key").addEventListener("click", () => {
    window.localStorage.setItem("pocketquant.apiKey", $("api-key").value.trim());
    ws.terminate(); // reconnect with the new key
    subscribeLive();
    $("key-box").open = false;
  });

  // -- search ----------------------------------------------------------------------------------
  let searchTimer = null;
  $("search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    const text = $("search").value.trim();
    if (!text) { $("results").hidden = true; return; }
    searchTimer = setTimeout(() => search(text), 250);
  });
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const first = state.searchResults[0];
    if (first) choose(first.exchange + ":" + first.symbol, first.description);
  });
  async function search(text) {
    try {
      const results = (await gql(`query($t: String!) { searchSymbols(text: $t, limit: 20) { exchange symbol description type } }`, { t: text })).searchSymbols;
      state.searchResults = results;
      const list = $("results");
      list.replaceChildren();
      if (!results.length) {
        const li = document.createElement("li");
        li.textContent = "No symbol matches “" + text + "”";
        list.append(li);
      }
      for (const r of results) {
        const li = document.createElement("li");
        li.dataset.ticker = r.exchange + ":" + r.symbol;
        li.textContent = r.exchange + ":" + r.symbol;
        const small = document.createElement("small");
        small.textContent = r.description + (r.type ? " · " + r.type : "");
        li.append(small);
        li.addEventListener("click", () => choose(li.dataset.ticker, r.description));
        list.append(li);
      }
      list.hidden = false;
    } catch (e) {
      setState("error", "Search failed: " + e.message);
    }
  }

  // -- choosing a symbol and interval ------------------------------------------------------------
  const split = (ticker) => [ticker.slice(0, ticker.indexOf(":")), ticker.slice(ticker.indexOf(":") + 1)];
  const label = () => $("interval").selectedOptions[0].textContent;

  function choose(ticker, description) {
    $("results").hidden = true;
    $("search").value = "";
    state.ticker = ticker;
    state.lastBar = null;
    state.closedBars = 0;
    $("ticker").textContent = ticker;
    $("description").textContent = description || "";
    $("sync").disabled = false;
    $("watch").disabled = false;
    $("live-bar").textContent = "";
    window.location.hash = ticker + "/" + state.interval;
    loadBars().then(subscribeLive);
    refreshStatus();
  }

  $("interval").addEventListener("change", () => {
    state.interval = $("interval").value;
    if (state.ticker) choose(state.ticker, $("description").textContent);
  });

  // A link to a chart: /#NASDAQ:AAPL/DAY_1
  const [hashTicker, hashInterval] = decodeURIComponent(window.location.hash.slice(1)).split("/");
  if (hashInterval && [...$("interval").options].some((o) => o.value === hashInterval)) {
    $("interval").value = state.interval = hashInterval;
  }
  if (hashTicker && hashTicker.indexOf(":") > 0) choose(hashTicker, "");
})();
