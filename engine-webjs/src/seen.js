// Marks a chat read, as whatsapp-web.js 1.34.7 Utils.js sendSeen does: the
// chat's ChatModel first (Chat.get, else findOrCreateLatestChat, as its
// getChat), then WAWebUpdateUnreadChatAction.sendSeen({chat, threadId})
// between WAWebStreamModel.Stream.markAvailable() and markUnavailable() (the
// account shows online only for the read, so the phone keeps its
// notifications). Evaluated with [jid]; resolves to true, or false when the
// page has no such chat.
async ([jid]) => {
  const R = window.require;
  const wid = R('WAWebWidFactory').createWid(jid);
  const chat = R('WAWebCollections').Chat.get(wid) || (await R('WAWebFindChatAction').findOrCreateLatestChat(wid))?.chat;
  if (!chat) return false;
  const Stream = R('WAWebStreamModel').Stream;
  Stream.markAvailable();
  try {
    await R('WAWebUpdateUnreadChatAction').sendSeen({ chat, threadId: undefined });
  } finally {
    Stream.markUnavailable();
  }
  return true;
}
