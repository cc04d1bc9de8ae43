// GraphiQL on PocketQuant: queries and mutations over HTTP, subscriptions over
// graphql-transport-ws. The headers in GraphiQL's Headers tab go with every request, and
// into connection_init for subscriptions, so an API key set there
// ({"Authorization": "Bearer pq_..."}) works for all three. A key saved on the chart page
// (localStorage "pocketquant.apiKey") fills the Headers tab in at first.
(function () {
  "use strict";
  const url = new URL("/graphql", window.location.href).toString();
  const wsUrl = url.replace(/^http/, "ws");
  const savedKey = window.localStorage.getItem("pocketquant.apiKey");
  const defaultHeaders = savedKey ? JSON.stringify({ Authorization: "Bearer " + savedKey }, null, 2) : undefined;

  function parseHeaders(headers) {
    if (!headers) return {};
    if (typeof headers === "string") {
      try { return JSON.parse(headers); } catch (e) { return {}; }
    }
    return headers;
  }

  async function httpFetch(params, headers) {
    const response = await fetch(url, {
      method: "POST",
      headers: Object.assign({ "Content-Type": "application/json", Accept: "application/json" }, headers),
      body: JSON.stringify(params),
    });
    const text = await response.text();
    try { return JSON.parse(text); } catch (e) { return { errors: [{ message: response.status + ": " + text }] }; }
  }

  function subscribe(params, headers) {
    const client = graphqlWs.createClient({ url: wsUrl, connectionParams: headers, lazy: true, retryAttempts: 0 });
    const queue = [];
    let notify = null;
    let finished = false;
    const push = (item) => { queue.push(item); if (notify) { notify(); notify = null; } };
    const dispose = client.subscribe(params, {
      next: (value) => push({ value }),
      error: (error) => {
        const message = error && error.reason ? "connection closed: " + error.reason
          : Array.isArray(error) ? error.map((e) => e.message).join("; ") : String(error && error.message || error);
        push({ value: { errors: [{ message }] } });
        push({ done: true });
      },
      complete: () => push({ done: true }),
    });
    return {
      [Symbol.asyncIterator]() { return this; },
      async next() {
        while (!queue.length) { await new Promise((resolve) => { notify = resolve; }); }
        const item = queue.shift();
        if (item.done) { finished = true; dispose(); client.dispose(); return { done: true, value: undefined }; }
        return { done: false, value: item.value };
      },
      async return() { if (!finished) { dispose(); client.dispose(); } return { done: true, value: undefined }; },
    };
  }

  function fetcher(params, options) {
    const headers = parseHeaders(options && options.headers);
    const isSubscription = /^\s*subscription\b/m.test(params.query || "")
      && (!params.operationName || new RegExp("subscription\\s+" + params.operationName + "\\b").test(params.query));
    return isSubscription ? subscribe(params, headers) : httpFetch(params, headers);
  }

  const root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(React.createElement(GraphiQL, {
    fetcher,
    defaultEditorToolsVisibility: defaultHeaders ? "headers" : false,
    headers: defaultHeaders,
    shouldPersistHeaders: true,
    defaultQuery: "# PocketQuant. Mutations (and reads, when the server requires keys) need an API key:\n"
      + "# put {\"Authorization\": \"Bearer pq_...\"} in the Headers tab below.\n"
      + "{\n  searchSymbols(text: \"AAPL\") { exchange symbol description }\n}\n",
  }));
})();
