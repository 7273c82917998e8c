// Live updates over callbackd's plain WebSocket (`/api/v1/push/ws`): one
// frame per message, `{channel, tag, data}`. Reconnects by itself with a
// growing pause, and tells the page when it is back so the page can read
// what it missed.

// `credential`: sent as the first frame, as a browser (which cannot set a
// WebSocket's headers) proves an agent.
export function connect(query, { onMessage, onOpen, onClose, credential }) {
  let socket = null;
  let closed = false;
  let pause = 500;
  let timer = null;

  const open = () => {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    socket = new WebSocket(`${scheme}://${location.host}/api/v1/push/ws?${new URLSearchParams(query)}`);
    if (credential) {
      socket.addEventListener('open', () => socket.send(JSON.stringify({ authorization: `Bearer ${credential}` })));
    }
    socket.addEventListener('message', (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame.channel === '/meta/connected') {
        pause = 500;
        onOpen?.();
        return;
      }
      onMessage(frame);
    });
    socket.addEventListener('close', () => {
      onClose?.();
      if (closed) return;
      timer = setTimeout(open, pause);
      pause = Math.min(pause * 2, 10000);
    });
  };
  open();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      socket?.close();
    },
  };
}
