// TEMPORARY STUB (lead's compile check; replaced by the dsn helper's file)
pub enum Action {
    Failed,
    Delayed,
}
pub struct Recipient<'a> {
    pub addr: &'a str,
    pub action: Action,
    pub status: String,
    pub diagnostic: Option<&'a str>,
    pub remote_mta: Option<&'a str>,
}
pub struct Report<'a> {
    pub reporting_mta: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub queue_id: &'a str,
    pub arrival: i64,
    pub now: i64,
    pub recipients: Vec<Recipient<'a>>,
    pub original: &'a [u8],
    pub will_retry_until: Option<i64>,
}
pub fn build(_r: &Report) -> Vec<u8> {
    Vec::new()
}
